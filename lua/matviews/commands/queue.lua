-- `matviews queue [list] [--status S] [--limit N]`, `matviews queue retry ID`,
-- `matviews queue cancel ID`: the jobs of the PostgreSQL-backed queue
-- (matviews_jobs), newest first, with their status (pending, running,
-- success, failed, cancelled); retry queues a failed or cancelled job again
-- as a new job; cancel takes a pending job off the queue.
local output = require "matviews.output"
local fmt = require "matviews.format"

local M = {
  name = "queue",
  summary = "List queued jobs (pending, running, failed, done); retry ID, cancel ID.",
}

-- --status accepts the job status names (in code order) and "done" (= success), after success.
local STATUSES = {}
for _, name in ipairs(require("matviews.vocab").JOB_STATUS_LIST) do
  STATUSES[#STATUSES + 1] = name
  if name == "success" then STATUSES[#STATUSES + 1] = "done" end
end

function M.configure(cmd)
  cmd:argument("action", "list (default), retry or cancel."):args("?"):choices({ "list", "retry", "cancel" })
  cmd:argument("id", "The job id (retry, cancel)."):args("?")
  cmd:option("--status", "Only jobs of this status (repeatable)."):args(1):count("*"):choices(STATUSES)
  cmd:option("--limit", "At most N jobs.", "50"):convert(fmt.positive_integer)
end

local COLUMNS = {
  { "id", "ID", align = "right" }, { "op", "OP" }, { "view", "VIEW" }, { "status", "STATUS" },
  { "enqueued_at", "ENQUEUED" }, { "started_at", "STARTED" }, { "finished_at", "FINISHED" },
  { "by", "BY" }, { "run_id", "RUN", align = "right" }, { "short_error", "ERROR" },
}

local function list(args, ctx)
  local wanted = {}
  for i, s in ipairs(args.status or {}) do wanted[i] = s == "done" and "success" or s end
  local rows = require("matviews.queue").list({ status = #wanted > 0 and wanted or nil, limit = args.limit })
  output.emit(ctx, output.array(rows), function(jobs)
    for _, j in ipairs(jobs) do
      j.by = fmt.who({ hostname = j.worker_hostname, process_pid = j.worker_pid })
      j.short_error = fmt.shorten(j.error, 60)
    end
    io.write(output.table(jobs, COLUMNS))
  end)
  return 0
end

function M.run(args, ctx)
  local targets = require "matviews.targets"
  local action = args.action or "list"
  if action == "list" then
    if args.id then targets.usage("queue list takes no job id") end
    return list(args, ctx)
  end
  local id = args.id and args.id:match("^%d+$") and math.tointeger(tonumber(args.id))
  if not id then targets.usage(("queue %s needs a job id (a whole number)"):format(action)) end
  local queue = require "matviews.queue"
  local r = action == "retry" and queue.retry(id) or queue.cancel(id)
  output.emit(ctx, r, function(d)
    if action == "retry" then print(("queued job %d (retry of job %d)"):format(d.job_id, d.retry_of))
    else print(("cancelled job %d"):format(d.job_id)) end
  end)
  return 0
end

return M
