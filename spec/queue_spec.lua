-- The queue adapter: with job_adapter = "queue" jobs return at once with a
-- job id; `matviews enqueue` queues by hand; `matviews worker` runs the
-- queue (reconciling orphans first), several workers share it and each job
-- runs exactly once; a job that fails is failed in the queue too.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"
local cjson = require "cjson"

local VIEWS = { "mv_a", "mv_b", "mv_c", "mv_d" }

local function with_config(text, fn)
  local path = H.write(H.tmpfile(".lua"), text)
  local config = require "matviews.config"
  mv.options.config = path
  config.reset()
  local ok, err = pcall(fn, path)
  mv.options.config = nil
  config.reset()
  if not ok then error(err, 0) end
end

local function jobs() return mv.query("SELECT * FROM matviews_jobs ORDER BY id") end

describe("the job queue", function()
  setup(function()
    H.fresh_db()
    mv.init()
    P.items()
    for _, name in ipairs(VIEWS) do
      mv.definitions.save({ name = name, sql = "SELECT id, v FROM items" })
      assert.is_true(mv.services.create_view(name).success)
    end
  end)
  before_each(function() mv.exec("TRUNCATE matviews_jobs, mat_view_refresh_runs, mat_view_create_runs") end)

  it("queues create, refresh and delete when the configuration says queue", function()
    with_config('job_adapter = "queue"', function()
      local r = mv.refresh("mv_a", { row_count_strategy = "exact" })
      assert.are.same({ queued = true, job_id = r.job_id, op = "refresh", view = "mv_a" }, r)
      assert.is_true(math.type(r.job_id) == "integer")
      assert.is_true(mv.create("mv_b", { force = true }).queued)
      assert.is_true(mv.delete("mv_c", { if_exists = true, conn = mv.conn() }).queued)
    end)
    local js = jobs()
    assert.are.same({ "refresh", "create", "delete" }, { js[1].op, js[2].op, js[3].op })
    assert.are.same({ 0, 0, 0 }, { js[1].status, js[2].status, js[3].status })
    assert.are.same({ row_count_strategy = "exact" }, cjson.decode(js[1].options))
    assert.are.same({ if_exists = true }, cjson.decode(js[3].options))
    assert.are.equal(0, #P.runs("refresh", "mv_a"))
    assert.are.equal("success", mv.refresh("mv_a").status) -- inline again by default
  end)

  it("refuses an adapter it does not know instead of guessing", function()
    with_config('job_adapter = "sidekiq"', function(path)
      local ok, err = pcall(mv.refresh, "mv_a")
      assert.is_false(ok)
      assert.are.equal(path .. ':1: key \'job_adapter\' must be one of "inline", "queue", got "sidekiq"', err.message)
    end)
    -- and a configuration changed at run time is checked again
    local cfg = mv.config()
    cfg.job_adapter = "resque"
    local ok, err = pcall(mv.refresh, "mv_a")
    cfg.job_adapter = "inline"
    assert.is_false(ok)
    assert.are.equal('job_adapter must be "inline" or "queue", the configuration says "resque"', err.message)
  end)

  it("queues only what a caller's transaction commits", function()
    with_config('job_adapter = "queue"', function()
      pcall(mv.transaction, function(c)
        mv.refresh("mv_a", { conn = c })
        error("changed my mind")
      end)
    end)
    assert.are.equal(0, #jobs())
  end)

  it("enqueues from the command line and a worker runs the jobs once", function()
    local r = H.mv("enqueue refresh mv_a mv_b --row-count exact")
    assert.are.equal(0, r.code)
    local js = jobs()
    assert.are.equal(("queued job %d: refresh mv_a\nqueued job %d: refresh mv_b\n"):format(js[1].id, js[2].id), r.out)
    r = H.mv("--json enqueue delete mv_nope mv_a")
    assert.are.equal(2, r.code)
    assert.are.equal('no definition named mv_nope', H.usage_message(r.err))
    assert.are.equal(2, #jobs()) -- all or nothing
    r = H.mv("worker --once")
    assert.are.equal(0, r.code)
    js = jobs()
    local runs = P.runs("refresh", "mv_a")
    assert.are.equal(1, #runs)
    assert.are.equal(("job %d refresh mv_a: success (run %d, %d ms)\n"):format(js[1].id, runs[1].id, runs[1].duration_ms),
      r.out:match("^[^\n]*\n"))
    assert.are.same({ 2, 2 }, { js[1].status, js[2].status })
    assert.are.equal(runs[1].id, js[1].run_id)
    assert.are.equal(5, runs[1].rows_count)
    assert.are_not.equal(mv.null, js[1].finished_at)
    assert.are.equal(mv.core.sys.hostname(), js[1].worker_hostname)
    assert.are.equal("", H.mv("worker --once").out) -- nothing left
  end)

  it("fails the job of a failed run and exits 1", function()
    mv.definitions.save({ name = "mv_never", sql = "SELECT 1 AS id" })
    H.mv("enqueue refresh mv_never")
    local r = H.mv("--json worker --once")
    assert.are.equal(1, r.code)
    local doc = cjson.decode(r.out)
    assert.are.equal(1, #doc.processed)
    assert.are.equal("failed", doc.processed[1].status)
    assert.are.equal("materialized view public.mv_never does not exist: `matviews create public.mv_never` creates it", doc.processed[1].error)
    local j = jobs()[1]
    assert.are.same({ 3, doc.processed[1].error, doc.processed[1].run_id }, { j.status, j.error, j.run_id })
  end)

  it("runs each of 20 queued jobs exactly once with two workers in parallel", function()
    local ids = {}
    for i = 1, 20 do
      ids[i] = require("matviews.queue").enqueue("refresh", VIEWS[(i - 1) % #VIEWS + 1]).job_id
    end
    local a = P.spawn("--json worker --once")
    local b = P.spawn("--json worker --once")
    local ra, rb = P.wait(a), P.wait(b)
    assert.are.same({ 0, 0 }, { ra.code, rb.code })
    local seen = {}
    for _, r in ipairs({ ra, rb }) do
      for _, job in ipairs(cjson.decode(r.out).processed) do
        assert.is_nil(seen[job.job_id])
        seen[job.job_id] = job.run_id
      end
    end
    for _, id in ipairs(ids) do assert.is_not_nil(seen[id]) end
    local js = jobs()
    assert.are.equal(20, #js)
    local runs = mv.query("SELECT id, status FROM mat_view_refresh_runs ORDER BY id")
    assert.are.equal(20, #runs)
    local run_of = {}
    for _, j in ipairs(js) do
      assert.are.equal(2, j.status)
      assert.is_nil(run_of[j.run_id])
      run_of[j.run_id] = j.id
      assert.are.equal(seen[j.id], j.run_id)
    end
    for _, r in ipairs(runs) do assert.are.equal(2, r.status); assert.is_not_nil(run_of[r.id]) end
  end)

  it("runs the queue on several processes with --concurrency", function()
    for i = 1, 9 do require("matviews.queue").enqueue("refresh", VIEWS[(i - 1) % #VIEWS + 1]) end
    local r = H.mv("--json worker --once --concurrency 3")
    assert.are.equal(0, r.code)
    assert.are.equal(9, #cjson.decode(r.out).processed)
    assert.are.equal(9, mv.query("SELECT count(*)::int AS n FROM matviews_jobs WHERE status = 2")[1].n)
    assert.are.equal(2, H.mv("worker --once --concurrency 0").code)
  end)

  it("reconciles orphaned runs and jobs of dead workers when it starts", function()
    local defn = mv.query("SELECT id FROM mat_view_definitions WHERE name = 'mv_a'")[1].id
    -- a run and a job left running by backends that are gone
    local dead = mv.query([[SELECT coalesce(max(pid), 0) + 100000 AS pid FROM pg_stat_activity]])[1].pid
    local run = mv.query([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at,
      backend_pid, hostname, process_pid) VALUES ($1, 1, now(), $2, 'elsewhere', 4242) RETURNING id]], defn, dead)[1].id
    local job = mv.query([[INSERT INTO matviews_jobs (op, mat_view_definition_id, status, started_at, backend_pid,
      worker_hostname, worker_pid) VALUES ('refresh', $1, 1, now(), $2, 'elsewhere', 4242) RETURNING id]], defn, dead)[1].id
    local r = H.mv("worker --once")
    assert.are.equal(0, r.code)
    assert.are.equal(("reconciled refresh run %d of mv_a: orphaned: the process running it (pid 4242 on elsewhere)"
      .. " ended before finishing; finalised by reconcile\n"
      .. "reconciled job %d refresh mv_a: worker 4242 on elsewhere ended before finishing this job; failed by reconcile\n")
      :format(run, job), r.out)
    assert.are.equal(3, mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", run)[1].status)
    assert.are.equal(3, mv.query("SELECT status FROM matviews_jobs WHERE id = $1", job)[1].status)
  end)
end)
