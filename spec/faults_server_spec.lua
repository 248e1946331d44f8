-- Fault: the server stops (fast shutdown) during a long refresh. The
-- command exits 1 with one line on stderr; once the server is back,
-- `matviews reconcile` fails the orphaned run and the view is intact. The
-- server of the other specs is shared, so this one starts a cluster of its
-- own (initdb + pg_ctl, as the postgres user when root) and always stops it.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local PORT = 55499

describe("the server stopping during a long refresh", function()
  local cluster, dsn, conn

  local function ctl(action) return cluster.ctl(action) end

  setup(function()
    H.fresh_db()
    cluster = P.own_cluster(PORT)
    dsn = cluster.dsn
  end)

  teardown(function()
    if conn then conn:close() end
    if cluster then cluster.destroy() end
  end)

  it("exits 1 with one line, and reconcile fails the run; the view keeps its contents", function()
    conn = mv.connect(dsn)
    mv.init(conn)
    conn:exec("CREATE TABLE items (id int PRIMARY KEY)")
    conn:exec("INSERT INTO items SELECT generate_series(1, 5)")
    mv.definitions.save({ name = "mv_long", sql = [[SELECT id FROM items
      WHERE pg_sleep(CASE WHEN (SELECT count(*) FROM items) > 5 THEN 60 ELSE 0 END) IS NOT NULL]] }, conn)
    assert.are.equal("success", mv.jobs.create("mv_long", { conn = conn }).status)
    conn:exec("INSERT INTO items VALUES (6)") -- the next refresh sleeps
    local p = P.spawn("--dsn " .. H.q(dsn) .. " --yes refresh mv_long")
    P.wait_for("the long refresh", function()
      return #conn:query([[SELECT 1 FROM pg_stat_activity WHERE state = 'active'
        AND query LIKE 'REFRESH MATERIALIZED VIEW %mv_long%']]) > 0
    end)
    local run = conn:query("SELECT id, process_pid FROM mat_view_refresh_runs WHERE status = 1")[1]
    conn:close()
    conn = nil
    local r = ctl("stop")
    assert.are.equal(0, r.code, r.err)
    r = P.wait(p)
    assert.are.equal(1, r.code)
    assert.matches(("^matviews: could not record the outcome of refresh run %d of mv_long %%(no connection to the server%%): "
      .. "failed in %%d+ ms: terminating connection due to administrator command\n$"):format(run.id), r.err)
    assert.matches(("^%%[1/1%%] refresh mv_long: failed: could not finalise run %d of mv_long: no connection to the server\n$")
      :format(run.id), r.out)

    r = ctl("start")
    assert.are.equal(0, r.code, r.err)
    r = H.mv("--dsn " .. H.q(dsn) .. " reconcile")
    assert.are.equal(0, r.code, r.err)
    assert.matches(("^refresh run %d of mv_long: orphaned: the process running it %%(pid %d on [^)]+%%) ended before finishing; "
      .. "finalised by reconcile\n"):format(run.id, run.process_pid), r.out)
    conn = mv.connect(dsn)
    assert.are.same({ { status = 3, orphaned = true } }, conn:query([[SELECT status, (meta->>'orphaned')::boolean AS orphaned
      FROM mat_view_refresh_runs WHERE id = $1]], run.id))
    assert.are.same({ { n = 5, populated = true } }, conn:query([[SELECT (SELECT count(*) FROM mv_long) AS n,
      (SELECT relispopulated FROM pg_class WHERE relname = 'mv_long') AS populated]]))
  end)
end)
