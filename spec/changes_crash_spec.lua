-- Skip-unchanged refresh across a server crash: the change table is
-- UNLOGGED, so crash recovery empties it, and with it the record of a
-- change committed before the crash. The sentinel row goes too, so the
-- next --if-changed refresh runs (the change is seen) instead of skipping,
-- and the one after may skip again. The server of the other specs is
-- shared, so this one crashes a cluster of its own (initdb + pg_ctl, as the
-- postgres user when root) and always stops it.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"
local cjson = require "cjson"

local PORT = 55497

describe("refresh --if-changed after a crash", function()
  local cluster, dsn
  local function ctl(action, mode) return cluster.ctl(action, mode) end

  -- `refresh ch_v --if-changed` on the cluster: the run's meta.skipped.
  local function skipped()
    local r = H.mv("--dsn " .. H.q(dsn) .. " refresh ch_v --if-changed --yes --json")
    assert.are.equal(0, r.code, r.err .. r.out)
    return cjson.decode(r.out)[1].meta.skipped
  end

  setup(function()
    H.fresh_db()
    cluster = P.own_cluster(PORT)
    dsn = cluster.dsn
  end)

  teardown(function()
    if cluster then cluster.destroy() end
  end)

  it("refreshes a view whose change was recorded before the crash, then skips again", function()
    do
      local conn <close> = mv.connect(dsn)
      mv.init(conn)
      conn:exec("CREATE TABLE ch_src (id int)")
      conn:exec("INSERT INTO ch_src VALUES (1)")
      assert.are.equal("unlogged", conn:query([[SELECT CASE relpersistence WHEN 'u' THEN 'unlogged' ELSE 'logged' END AS p
        FROM pg_class WHERE relname = 'matviews_table_changes']])[1].p)
    end
    local defs = H.defs_dir({ ["v.lua"] = 'view "ch_v" { sql = "SELECT count(*) AS n FROM ch_src", refresh_when = "changed" }\n' })
    local r = H.mv("--dsn " .. H.q(dsn) .. " apply --definitions " .. H.q(defs))
    assert.are.equal(0, r.code, r.err .. r.out)
    do -- the C trigger (make test installs the extension on the server)
      local conn <close> = mv.connect(dsn)
      assert.are.same({ { f = "matviews_note_change_c" } }, conn:query([[SELECT tgfoid::regproc::text AS f
        FROM pg_trigger WHERE tgrelid = 'ch_src'::regclass AND tgname = 'matviews_track_changes']]))
    end
    assert.is_nil(skipped())                  -- the first baseline
    assert.are.equal("unchanged", skipped())
    do
      local conn <close> = mv.connect(dsn)
      conn:exec("INSERT INTO ch_src VALUES (2)") -- committed, recorded in the unlogged table
      assert.is_true(conn:query("SELECT count(*)::int AS n FROM matviews_table_changes WHERE relid = 'ch_src'::regclass")[1].n > 0)
      conn:exec("CHECKPOINT")
    end
    r = ctl("stop", "immediate")             -- a crash: recovery resets unlogged tables
    assert.are.equal(0, r.code, r.err)
    r = ctl("start")
    assert.are.equal(0, r.code, r.err .. H.slurp(cluster.dir .. "/server.log"))
    local conn <close> = mv.connect(dsn)
    assert.are.equal(0, conn:query("SELECT count(*)::int AS n FROM matviews_table_changes")[1].n)
    -- the change row is gone, but so is the sentinel: refreshed, not skipped
    assert.is_nil(skipped())
    assert.are.same({ { n = 2 } }, conn:query("SELECT n FROM ch_v"))
    local why = conn:query("SELECT count(*)::int AS n FROM matviews_table_changes WHERE relid = 0")[1].n
    assert.are.equal(1, why)                  -- tracking re-seeded
    assert.are.equal("unchanged", skipped())
    conn:exec("INSERT INTO ch_src VALUES (3)")
    assert.is_nil(skipped())
    assert.are.same({ { n = 3 } }, conn:query("SELECT n FROM ch_v"))
  end)
end)
