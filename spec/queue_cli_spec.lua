-- `matviews queue`: lists the jobs of the queue (pending, running, failed,
-- done, cancelled) as a table or --json, retries a failed job as a new one
-- and cancels a pending one, which no worker then claims.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function json(args)
  local r = H.mv(args .. " --json")
  assert.are.equal(0, r.code, r.err)
  return cjson.decode(r.out)
end

describe("matviews queue", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE q_src (d int)")
    mv.exec("INSERT INTO q_src VALUES (1)")
    mv.definitions.save({ name = "q_ok", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "q_bad", sql = "SELECT 10 / d AS x FROM q_src" })
    assert.is_true(mv.services.create_view("q_ok").success)
    assert.is_true(mv.services.create_view("q_bad").success)
  end)

  it("lists pending, running, failed and done jobs, newest first", function()
    assert.are.equal(0, H.mv("enqueue refresh q_ok q_bad").code)
    mv.exec("UPDATE q_src SET d = 0")
    assert.are.equal(1, H.mv("worker --once").code) -- q_bad fails
    assert.are.equal(0, H.mv("enqueue refresh q_ok").code)
    -- a job a worker (this session) is running
    mv.exec([[INSERT INTO matviews_jobs (op, mat_view_definition_id, status, started_at, worker_hostname, worker_pid, backend_pid)
      SELECT 'refresh', id, 1, now(), 'h9', 99, pg_backend_pid() FROM mat_view_definitions WHERE name = 'q_ok']])
    local doc = json("queue")
    local got = {}
    for i, j in ipairs(doc) do got[i] = j.view .. " " .. j.status end
    assert.are.same({ "q_ok running", "q_ok pending", "q_bad failed", "q_ok success" }, got)
    assert.matches("division by zero", doc[3].error)
    assert.are.equal("number", type(doc[4].run_id))
    assert.matches("^%d+%-%d+%-%d+T%d+:%d+:%d+%+00:00$", doc[4].finished_at)
    local pending = json("queue --status pending")
    assert.are.same({ doc[2].id }, { pending[1].id })
    assert.are.equal(1, #pending)
    local done = json("queue --status done --status failed")
    assert.are.same({ doc[3].id, doc[4].id }, { done[1].id, done[2].id })
    local text = H.mv("queue").out
    assert.matches("^ *ID +OP +VIEW +STATUS +ENQUEUED +STARTED +FINISHED +BY +RUN +ERROR\n", text)
    assert.matches("\n *%d+ +refresh +q_ok +running +[%d-]+T[%d:]+%+00:00 +[%d-]+T[%d:]+%+00:00 +h9:99", text)
    assert.matches("q_bad +failed .*division by zero", text)
  end)

  it("cancels a pending job, which no worker then runs, and refuses the others", function()
    local doc = json("queue --status pending")
    local id = math.tointeger(doc[1].id)
    assert.are.same({ job_id = id, status = "cancelled" }, json("queue cancel " .. id))
    assert.are.equal("cancelled", json("queue --status cancelled")[1].status)
    local running = math.tointeger(json("queue --status running")[1].id)
    local r = H.mv("queue cancel " .. running)
    assert.are.equal(1, r.code)
    assert.matches("job " .. running .. " is running in worker h9:99; it is not interrupted", r.err)
    r = H.mv("queue cancel " .. id)
    assert.are.equal(1, r.code)
    assert.are.equal(("matviews: job %d is cancelled: only pending jobs are cancelled\n"):format(id), r.err)
    assert.are.equal("matviews: no job with id 999999\n", H.mv("queue cancel 999999").err)
    mv.exec("DELETE FROM matviews_jobs WHERE status = 1")
    r = H.mv("worker --once --json")
    assert.are.equal(0, r.code)
    assert.are.same({}, cjson.decode(r.out).processed)
  end)

  it("retries a failed job as a new job with the same options", function()
    mv.exec("UPDATE q_src SET d = 1")
    local failed = json("queue --status failed")[1]
    failed.id = math.tointeger(failed.id)
    mv.exec("UPDATE matviews_jobs SET options = '{\"row_count_strategy\":\"exact\"}' WHERE id = $1", failed.id)
    local r = H.mv("queue retry " .. failed.id)
    assert.are.equal(0, r.code, r.err)
    local new = tonumber(r.out:match("^queued job (%d+) %(retry of job " .. failed.id .. "%)\n$"))
    assert.is_truthy(new)
    local job = json("queue --status pending")[1]
    assert.are.same({ new, "q_bad", { row_count_strategy = "exact" } }, { job.id, job.view, job.options })
    assert.are.equal(0, H.mv("worker --once").code)
    local run = mv.query([[SELECT r.rows_count FROM matviews_jobs j JOIN mat_view_refresh_runs r ON r.id = j.run_id
      WHERE j.id = $1 AND j.status = 2]], new)
    assert.are.same({ { rows_count = 1 } }, run)
    r = H.mv("queue retry " .. new)
    assert.are.equal(1, r.code)
    assert.are.equal(("matviews: job %d is success: only failed or cancelled jobs are retried\n"):format(new), r.err)
  end)
end)
