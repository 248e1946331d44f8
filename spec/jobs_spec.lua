-- Jobs and run recording: the run rows of create, refresh and delete with
-- every column of the seed, the running state seen from outside, the failure
-- paths (service error, service raising, Ctrl-C), orphans left by a killed
-- process and their reconciliation, and the hooks.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"
local sys = mv.core.sys

local SLOW = 1.5 -- seconds a refresh of mv_slow takes

local function defn_id(name)
  return mv.query("SELECT id FROM mat_view_definitions WHERE name = $1", name)[1].id
end

describe("jobs", function()
  setup(function()
    H.fresh_db()
    mv.init()
    P.items()
    mv.definitions.save({ name = "mv_items", sql = "SELECT id, v FROM items", unique_index_columns = { "id" } })
    mv.definitions.save({ name = "mv_slow", sql = ("SELECT 1 AS id, pg_sleep(%s)::text AS slept"):format(SLOW) })
    mv.definitions.save({ name = "mv_never", sql = "SELECT 1 AS id" })
    assert.is_true(mv.services.create_view("mv_slow", { no_data = true }).success)
  end)
  before_each(function() mv.hooks.clear() end)

  it("records a create run with the seed's columns and returns it", function()
    local t0 = sys.monotonic_ms()
    local run = mv.create("mv_items", { row_count_strategy = "exact" })
    local wall = sys.monotonic_ms() - t0
    assert.are.equal("success", run.status)
    assert.are.equal("create", run.op)
    assert.are.equal("mv_items", run.view)
    assert.are.equal(defn_id("mv_items"), run.mat_view_definition_id)
    assert.is_nil(run.error)
    assert.is_nil(run.rows_count)
    assert.is_true(run.duration_ms >= 0 and run.duration_ms <= wall)
    local row = P.runs("create", "mv_items")[1]
    assert.are.equal(2, row.status)
    assert.are.equal(run.id, row.id)
    assert.are.equal(run.duration_ms, row.duration_ms)
    assert.are.equal(mv.null, row.error)
    assert.are.same({ view = "public.mv_items", force = false, no_data = false, row_count_strategy = "exact" },
      { view = row.meta.view, force = row.meta.force, no_data = row.meta.no_data,
        row_count_strategy = row.meta.row_count_strategy })
    assert.matches('^CREATE MATERIALIZED VIEW "public"."mv_items" AS', row.meta.sql[1])
    assert.are.equal("created", row.meta.service_status)
    assert.are.equal(5, row.meta.row_count_after)
  end)

  it("records a refresh run with every seed column right", function()
    mv.exec("INSERT INTO items VALUES (6, 'v6')")
    local t0 = sys.monotonic_ms()
    local run = mv.refresh("mv_items", { row_count_strategy = "exact" })
    local wall = sys.monotonic_ms() - t0
    local row = mv.query([[SELECT *, finished_at >= started_at AS ordered,
        created_at IS NOT NULL AND updated_at >= created_at AS stamped,
        EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = backend_pid) AS backend_alive
      FROM mat_view_refresh_runs WHERE id = $1]], run.id)[1]
    assert.are.equal(defn_id("mv_items"), row.mat_view_definition_id)
    assert.are.equal(2, row.status)
    assert.is_true(row.ordered)
    assert.is_true(row.stamped)
    assert.is_true(row.duration_ms >= 0 and row.duration_ms <= wall)
    assert.are.equal(6, row.rows_count)
    assert.are.equal(mv.null, row.error)
    assert.are.equal(sys.hostname(), row.hostname)
    assert.are.equal(sys.getpid(), row.process_pid)
    assert.is_true(row.backend_alive) -- the recorder connection of this process
    local meta = mv.json.decode(row.meta)
    assert.are.equal("public.mv_items", meta.view)
    assert.are.equal("regular", meta.strategy)
    assert.are.equal("exact", meta.row_count_strategy)
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."mv_items"', 'ANALYZE "public"."mv_items"' }, meta.sql)
    assert.are.equal(6, meta.row_count_after)
    assert.are.equal(1, #meta.attempts)
    assert.are.equal("updated", meta.attempts[1].status)
    -- the returned run is the finalised row
    assert.are.same({ "success", "refresh", 6, row.duration_ms, row.backend_pid, "public.mv_items" },
      { run.status, run.op, run.rows_count, run.duration_ms, run.backend_pid, run.meta.view })
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", run.started_at)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", run.finished_at)
  end)

  it("leaves rows_count empty when no row count is asked", function()
    local run = mv.refresh("mv_items", { row_count_strategy = "none" })
    assert.are.equal("success", run.status)
    assert.is_nil(run.rows_count)
    assert.are.equal(mv.null, P.runs("refresh", "mv_items")[#P.runs("refresh", "mv_items")].rows_count)
  end)

  it("counts rows as the job, else the definition, else the configuration says", function()
    assert.are.equal("estimated", mv.refresh("mv_items").meta.row_count_strategy)
    mv.definitions.save({ name = "mv_items", sql = "SELECT id, v FROM items", unique_index_columns = { "id" },
      options = { row_count = "exact" } })
    local run = mv.refresh("mv_items")
    assert.are.same({ "exact", 6 }, { run.meta.row_count_strategy, run.rows_count })
    assert.are.equal("none", mv.refresh("mv_items", { row_count_strategy = "none" }).meta.row_count_strategy)
  end)

  it("accepts the definition's id and says when there is no such definition", function()
    local run = mv.refresh(defn_id("mv_items"))
    assert.are.equal("mv_items", run.view)
    local ok, err = pcall(mv.refresh, "mv_nope")
    assert.is_false(ok)
    assert.are.equal('no definition named "mv_nope"', err.message)
    ok, err = pcall(mv.refresh, 987654)
    assert.are.equal("no definition with id 987654", err.message)
  end)

  it("shows the run as running while a slow refresh is in flight", function()
    local t0 = sys.monotonic_ms()
    local p = P.spawn("-e " .. H.q('print(mv.refresh("mv_slow").status)'))
    local row = P.run_with_status("refresh", "mv_slow", 1)
    assert.are.equal(mv.null, row.finished_at)
    assert.are.equal(mv.null, row.duration_ms)
    assert.are.equal(mv.null, row.error)
    assert.are_not.equal(mv.null, row.started_at)
    assert.are.equal(sys.hostname(), row.hostname)
    assert.are.equal("regular", row.meta.strategy)
    assert.are.equal(1, #mv.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", row.backend_pid))
    local r = P.wait(p)
    local wall = sys.monotonic_ms() - t0
    assert.are.equal(0, r.code)
    assert.are.equal("success\n", r.out)
    local done = mv.query("SELECT * FROM mat_view_refresh_runs WHERE id = $1", row.id)[1]
    assert.are.equal(2, done.status)
    assert.are.equal(row.process_pid, done.process_pid)
    assert.is_true(done.duration_ms >= SLOW * 1000 and done.duration_ms <= wall)
  end)

  it("records a failed refresh: status, error and meta", function()
    local run = mv.refresh("mv_never")
    assert.are.equal("failed", run.status)
    assert.are.equal("materialized view public.mv_never does not exist: `matviews create public.mv_never` creates it", run.error)
    local row = P.runs("refresh", "mv_never")[1]
    assert.are.equal(3, row.status)
    assert.are.equal(run.error, row.error)
    assert.are_not.equal(mv.null, row.finished_at)
    assert.is_true(row.duration_ms >= 0)
    assert.are.equal("error", row.meta.service_status)
    assert.are.equal(run.error, row.meta.error.message)
    assert.are.equal("public.mv_never", row.meta.view)
    assert.are.equal(1, #row.meta.attempts) -- not an error a retry fixes
  end)

  it("records a failed run when the service raises", function()
    local real = mv.services.regular_refresh
    mv.services.regular_refresh = function() error({ message = "service exploded" }) end
    local ok, run = pcall(mv.refresh, "mv_items")
    mv.services.regular_refresh = real
    assert.is_true(ok)
    assert.are.equal("failed", run.status)
    assert.are.equal("service exploded", run.error)
    local row = P.runs("refresh", "mv_items")
    assert.are.equal(3, row[#row].status)
    assert.are.equal("service exploded", row[#row].error)
    assert.is_true(row[#row].meta.attempts[1].error.message == "service exploded")
  end)

  it("records a delete run with cascade and if_exists in meta", function()
    mv.definitions.save({ name = "mv_gone", sql = "SELECT 1 AS id" })
    local run = mv.delete("mv_gone", { if_exists = true })
    assert.are.equal("success", run.status)
    local row = P.runs("delete", "mv_gone")[1]
    assert.are.equal(2, row.status)
    assert.are.same({ false, true, "public.mv_gone", "skipped" },
      { row.meta.cascade, row.meta.if_exists, row.meta.view, row.meta.service_status })
  end)

  it("finalises the run as failed when Ctrl-C cancels the refresh", function()
    local p = P.spawn("-e " .. H.q('local r = mv.refresh("mv_slow"); print(r.status, r.error)'))
    local row = P.run_with_status("refresh", "mv_slow", 1)
    P.wait_for("the refresh query", function()
      return #mv.query([[SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
        AND state = 'active' AND query LIKE 'REFRESH MATERIALIZED VIEW%mv_slow%']]) > 0
    end)
    assert.is_true(P.kill(row.process_pid, "INT"))
    local r = P.wait(p)
    assert.are.equal(0, r.code)
    assert.are.equal("failed\tcanceling statement due to user request\n", r.out)
    local done = mv.query("SELECT * FROM mat_view_refresh_runs WHERE id = $1", row.id)[1]
    assert.are.equal(3, done.status)
    assert.are.equal("canceling statement due to user request", done.error)
    assert.are_not.equal(mv.null, done.finished_at)
    assert.are.equal("57014", mv.json.decode(done.meta).error.sqlstate)
  end)

  it("leaves an orphan when the process is killed, which reconcile finalises", function()
    local p = P.spawn("-e " .. H.q('mv.refresh("mv_slow")'))
    local row = P.run_with_status("refresh", "mv_slow", 1)
    assert.is_true(P.kill(row.process_pid, "KILL"))
    P.wait(p)
    local orphans = P.wait_for("the orphan", function()
      local o = mv.jobs.orphaned_runs()
      return #o > 0 and o or nil
    end)
    assert.are.same({ op = "refresh", id = row.id, view = "mv_slow", process_pid = row.process_pid },
      { op = orphans[1].op, id = orphans[1].id, view = orphans[1].view, process_pid = orphans[1].process_pid })
    local r = H.mv("reconcile")
    assert.are.equal(0, r.code)
    local msg = ("orphaned: the process running it (pid %d on %s) ended before finishing; finalised by reconcile")
      :format(row.process_pid, sys.hostname())
    assert.are.equal(("refresh run %d of mv_slow: %s\nreconciled 1 run(s), 0 job(s); dropped 0 relation(s)\n")
      :format(row.id, msg), r.out)
    local done = mv.query("SELECT * FROM mat_view_refresh_runs WHERE id = $1", row.id)[1]
    assert.are.equal(3, done.status)
    assert.are.equal(msg, done.error)
    assert.is_true(mv.json.decode(done.meta).orphaned)
    assert.are.same({}, mv.jobs.orphaned_runs())
    assert.are.same({ runs = {}, jobs = {}, dropped = {}, skipped = {} }, mv.reconcile())
  end)

  it("drops the relations interrupted swaps left, once their session is gone", function()
    mv.definitions.save({ name = "mv_sw", sql = "SELECT 1 AS id", refresh_strategy = "swap" })
    assert.is_true(mv.services.create_view("mv_sw").success)
    -- what a swap whose session died after its build leaves (see src/swap.h),
    -- and the build of a swap still running (this session)
    local dead = mv.query("SELECT coalesce(max(pid), 0) + 100000 AS pid FROM pg_stat_activity")[1].pid
    local live = mv.conn():info().pid
    mv.exec(("CREATE MATERIALIZED VIEW mv_swap_mv_sw_%d AS SELECT 1 AS id"):format(dead))
    mv.exec(("CREATE INDEX mv_swap_mv_sw_%d_i1 ON mv_swap_mv_sw_%d (id)"):format(dead, dead))
    mv.exec(("CREATE MATERIALIZED VIEW mv_swap_mv_sw_%d AS SELECT 1 AS id"):format(live))
    mv.exec("CREATE MATERIALIZED VIEW mv_swap_unrelated_1 AS SELECT 1 AS id") -- no such definition
    local temp = "mv_swap_mv_sw_" .. dead
    assert.are.same({ { schema = "public", relname = temp, view = "mv_sw" } }, mv.jobs.swap_leftovers())
    local r = H.mv("--json reconcile")
    assert.are.equal(0, r.code)
    assert.are.same({ "public." .. temp }, mv.json.decode(r.out).dropped)
    assert.are.same({}, mv.query("SELECT 1 FROM pg_class WHERE relname LIKE $1", temp .. "%"))
    assert.are.equal(1, #mv.query("SELECT 1 FROM pg_class WHERE relname = $1", "mv_swap_mv_sw_" .. live))
    assert.are.equal(1, #mv.query("SELECT 1 FROM pg_class WHERE relname = 'mv_swap_unrelated_1'"))
    assert.are.equal(1, #mv.query("SELECT 1 FROM pg_class WHERE relname = 'mv_sw' AND relkind = 'm'"))
    mv.exec(("DROP MATERIALIZED VIEW mv_swap_mv_sw_%d, mv_swap_unrelated_1"):format(live))
  end)

  it("never takes a live run for an orphan", function()
    local p = P.spawn("-e " .. H.q('mv.refresh("mv_slow")'))
    P.run_with_status("refresh", "mv_slow", 1)
    assert.are.same({}, mv.jobs.orphaned_runs())
    assert.are.same({}, mv.reconcile().runs)
    assert.are.equal(0, P.wait(p).code)
  end)

  describe("hooks", function()
    it("calls on_success and on_failure with the finalised run, filtered by view", function()
      local seen = {}
      mv.hooks.on_success(function(run) seen[#seen + 1] = "ok " .. run.view .. " " .. run.status end)
      mv.hooks.on_success(function(run) seen[#seen + 1] = "items only " .. run.id end, "mv_items")
      mv.hooks.on_failure(function(run)
        local row = mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", run.id)[1]
        seen[#seen + 1] = "failed " .. run.view .. " row status " .. row.status
      end)
      local a = mv.refresh("mv_items")
      mv.refresh("mv_never")
      assert.are.same({ "ok mv_items success", "items only " .. a.id, "failed mv_never row status 3" }, seen)
    end)

    it("reports a hook's error on stderr and keeps the run's status", function()
      local cfg = H.write(H.tmpfile(".lua"), [[
        on_success(function(run) error("hook broke") end)
        on_success(function(run) print("second hook ran for " .. run.view) end)
      ]])
      local r = H.mv("--config " .. H.q(cfg) .. " -e " .. H.q('local r = mv.refresh("mv_items"); print(r.status, r.id)'))
      assert.are.equal(0, r.code)
      local status, id = r.out:match("second hook ran for mv_items\n(%a+)\t(%d+)\n$")
      assert.are.equal("success", status)
      assert.matches("^matviews: on_success hook failed for mv_items %(run " .. id .. "%): .*hook broke\n$", r.err)
      assert.are.equal(2, mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", tonumber(id))[1].status)
    end)

    it("refuses a hook that is not a function", function()
      local ok, err = pcall(mv.hooks.on_success, "nope")
      assert.is_false(ok)
      assert.are.equal("a hook must be a function, got string", err.message)
    end)
  end)
end)
