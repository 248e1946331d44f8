-- Who runs the views of a parallel refresh (matviews.parallel): with up to
-- two at once the coordinator is one of the runners beside one worker,
-- kept two views deep; with three or more it only coordinates. Seen in the
-- run rows' process_pid, and in what a Ctrl-C leaves of a worker's queue.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

-- The distinct process_pid of the refresh runs after run id `after`.
local function pids_after(after)
  local out = {}
  for _, r in ipairs(mv.query([[SELECT DISTINCT process_pid FROM mat_view_refresh_runs WHERE id > $1
      ORDER BY process_pid]], after)) do
    out[#out + 1] = r.process_pid
  end
  return out
end

local function last_run_id()
  return mv.query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
end

describe("the runners of a parallel refresh", function()
  setup(function()
    H.fresh_db()
    mv.init()
    for i = 1, 6 do
      mv.definitions.save({ name = "pl_" .. i, sql = "SELECT 1 AS x" })
      mv.exec(("CREATE MATERIALIZED VIEW pl_%d AS SELECT 1 AS x"):format(i))
    end
    for _, n in ipairs({ "pl_q1", "pl_q3" }) do
      mv.definitions.save({ name = n, sql = "SELECT 1 AS x FROM pg_sleep(30)" })
      mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 1 AS x FROM pg_sleep(30) WITH NO DATA"):format(n))
    end
    mv.definitions.save({ name = "pl_q2", sql = "SELECT 1 AS x" })
    mv.exec("CREATE MATERIALIZED VIEW pl_q2 AS SELECT 1 AS x")
  end)

  local SIX = { "pl_1", "pl_2", "pl_3", "pl_4", "pl_5", "pl_6" }

  it("parallel = 1: every view runs in the calling process, no worker starts", function()
    local before = last_run_id()
    local r = mv.refresh_all({ parallel = 1, views = SIX })
    assert.are.same({ true, 6 }, { r.ok, r.succeeded })
    assert.are.same({ mv.core.sys.getpid() }, pids_after(before))
  end)

  it("parallel = 2: the calling process and one worker share the views", function()
    local before = last_run_id()
    local r = mv.refresh_all({ parallel = 2, views = SIX })
    assert.are.same({ true, 6 }, { r.ok, r.succeeded })
    local pids = pids_after(before)
    assert.are.equal(2, #pids, table.concat(pids, " "))
    assert.is_true(pids[1] == mv.core.sys.getpid() or pids[2] == mv.core.sys.getpid(), table.concat(pids, " "))
  end)

  it("parallel = 3: the calling process only coordinates", function()
    local before = last_run_id()
    local r = mv.refresh_all({ parallel = 3, views = SIX })
    assert.are.same({ true, 6 }, { r.ok, r.succeeded })
    for _, pid in ipairs(pids_after(before)) do assert.are_not.equal(mv.core.sys.getpid(), pid) end
  end)

  -- The worker gets the first two names (pl_q1 runs, pl_q2 waits in its
  -- queue), the command runs pl_q3 itself: Ctrl-C cancels both running
  -- views, and the queued one is not started.
  it("Ctrl-C: the views running are cancelled, the one queued on the worker gets no run", function()
    local before = last_run_id()
    local p = P.spawn("--yes refresh pl_q1 pl_q2 pl_q3 --parallel 2")
    P.wait_query("REFRESH MATERIALIZED VIEW%pl_q1%", nil, "PgSleep")
    P.wait_query("REFRESH MATERIALIZED VIEW%pl_q3%", nil, "PgSleep")
    assert.is_true(P.kill(P.pid(p), "INT"))
    local r = P.wait(p)
    assert.are.equal(130, r.code, r.err)
    assert.matches("interrupted: 1 not started\n$", r.err)
    local runs = {}
    for _, row in ipairs(mv.query([[SELECT d.name, r.status, r.error FROM mat_view_refresh_runs r
        JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE r.id > $1 ORDER BY d.name]], before)) do
      runs[#runs + 1] = { row.name, row.status, row.error }
    end
    assert.are.same({ { "pl_q1", 3, "canceling statement due to user request" },
      { "pl_q3", 3, "canceling statement due to user request" } }, runs)
    -- the runs above made this process open a recorder connection of its own
    local mine = mv.jobs.recorder(mv.conn()):info().pid
    P.wait_for("the worker to end", function() return #mv.query(P.OTHERS .. " AND pid <> $1", mine) == 0 end)
  end)
end)
