-- reconcile's scope: it drops only the build relations of known
-- definitions, in their own schema, whose backend is gone; one it cannot
-- drop is skipped and named, and the rest of reconcile (and the worker that
-- runs it on start) goes on.
local H = require "spec.helper"
local mv = require "matviews"

describe("reconcile", function()
  local dead
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "mv_reg", sql = "SELECT 1 AS id", refresh_strategy = "swap" })
    assert.is_true(mv.services.create_view("mv_reg").success)
    dead = mv.query("SELECT coalesce(max(pid), 0) + 100000 AS pid FROM pg_stat_activity")[1].pid
  end)
  local function exists(rel) return mv.query("SELECT to_regclass($1) IS NOT NULL AS e", rel)[1].e end

  it("leaves a relation of the build pattern in another schema alone", function()
    mv.exec("CREATE SCHEMA archive")
    local theirs = ("archive.mv_swap_mv_reg_%d"):format(dead)
    local ours = ("public.mv_swap_mv_reg_%d"):format(dead)
    mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 2024 AS year"):format(theirs))
    mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 1 AS id"):format(ours))
    local r = H.mv("--json reconcile")
    assert.are.equal(0, r.code, r.err)
    assert.are.same({ ours }, mv.json.decode(r.out).dropped)
    assert.is_true(exists(theirs))
    assert.is_false(exists(ours))
    mv.exec("DROP SCHEMA archive CASCADE")
  end)

  it("skips a build relation it cannot drop, says so, and goes on", function()
    local stuck = ("mv_swap_mv_reg_%d"):format(dead)
    local gone = ("mv_swap_mv_reg_%d"):format(dead + 1)
    mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 1 AS id"):format(stuck))
    mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 1 AS id"):format(gone))
    mv.exec(("CREATE VIEW reads_it AS SELECT * FROM %s"):format(stuck))
    local r = H.mv("reconcile")
    assert.are.equal(0, r.code, r.err)
    assert.matches(("skipped public.%s: cannot drop materialized view %s because other objects depend on it\n")
      :format(stuck, stuck), r.out)
    assert.matches("dropped public." .. gone .. "\n", r.out, 1, true)
    assert.matches("dropped 1 relation%(s%); skipped 1 %(drop them by hand%)\n$", r.out)
    assert.is_true(exists(stuck))
    assert.is_false(exists(gone))
    -- a worker starting reconciles too, and still runs the queued job
    assert.are.equal(0, H.mv("enqueue refresh mv_reg").code)
    r = H.mv("worker --once")
    assert.are.equal(0, r.code, r.err)
    assert.matches("skipped public." .. stuck, r.out, 1, true)
    assert.matches("job %d+ refresh [%w_.]*mv_reg: success", r.out)
    mv.exec("DROP VIEW reads_it")
    mv.exec("DROP MATERIALIZED VIEW " .. stuck)
  end)
end)
