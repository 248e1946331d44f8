-- The PostgreSQL-backed job queue (job_adapter = "queue"): enqueue inserts a
-- row into matviews_jobs; workers claim pending rows one at a time with
-- FOR UPDATE SKIP LOCKED in a single UPDATE, so several workers, on one
-- machine or many, share one queue and each job runs once. The claimed job
-- runs inline (matviews.jobs.run) and its row gets the run's outcome.
local cjson = require "cjson"
local core = require "matviews.core"
local vocab = require "matviews.vocab"
local error_message = core.error_message -- the text of a caught error

local M = {}

-- The job statuses (defined once, in matviews.vocab): the run statuses of
-- matviews.catalog plus 4, a pending job cancelled by `matviews queue
-- cancel` (never claimed: claim takes pending ones only).
M.STATUS, M.STATUS_CODE = vocab.JOB_STATUS, vocab.JOB_STATUS_CODE
local CODE = M.STATUS_CODE

-- SQL with {name} as the code of job status name, written in at load.
local function sql(text) return vocab.sql(text, CODE) end

local function mv() return require "matviews" end

-- Options that travel with a job: JSON values only (no connection).
local function portable(opts)
  local t = {}
  for k, v in pairs(opts or {}) do
    if k ~= "conn" and k ~= "inline" and type(v) ~= "function" and type(v) ~= "userdata" then t[k] = v end
  end
  return t
end

-- The definition's id and name (its label) for ref (a name, "schema.name"
-- or an id); raises when missing or ambiguous.
function M.definition(conn, ref)
  local id = math.type(ref) == "integer" and ref or (type(ref) == "string" and ref:match("^%d+$") and tonumber(ref))
  local d = mv().definitions.find(id and math.tointeger(id) or ref, conn)
  if not d then
    mv().error(id and ("no definition with id " .. id) or ('no definition named "' .. tostring(ref) .. '"'))
  end
  return { id = d.id, name = d.label }
end

-- Puts a job on the queue (opts.conn: in that session, so inside a caller's
-- transaction the job is queued only if it commits). Returns
-- { queued = true, job_id = n, op, view }.
function M.enqueue(op, ref, opts)
  if not vocab.RUN_TABLES[op] then
    mv().error("unknown job " .. tostring(op) .. " (" .. vocab.OPS_TEXT .. ")")
  end
  opts = opts or {}
  local conn = opts.conn or mv().conn()
  local d = M.definition(conn, ref)
  local row = conn:query([[INSERT INTO matviews_jobs (op, mat_view_definition_id, options)
    VALUES ($1, $2, $3::jsonb) RETURNING id]], op, d.id, cjson.encode(portable(opts)))[1]
  return { queued = true, job_id = row.id, op = op, view = d.name }
end

-- Claims the oldest pending job for this process; nil when there is none.
local CLAIM_SQL = sql[[UPDATE matviews_jobs j SET status = {running}, started_at = clock_timestamp(),
      worker_hostname = $1, worker_pid = $2, backend_pid = pg_backend_pid(), updated_at = clock_timestamp()
    WHERE j.id = (SELECT id FROM matviews_jobs WHERE status = {pending} AND run_after <= clock_timestamp()
                  ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1) AND j.status = {pending}
    RETURNING j.id, j.op, j.mat_view_definition_id, j.options,
      (SELECT name FROM mat_view_definitions d WHERE d.id = j.mat_view_definition_id) AS view]]
function M.claim(conn)
  local rows = conn:query(CLAIM_SQL, core.sys.hostname(), core.sys.getpid())
  return rows[1]
end

local function finish(conn, id, status, run_id, err)
  conn:exec([[UPDATE matviews_jobs SET status = $2, run_id = $3, error = $4, finished_at = clock_timestamp(),
    updated_at = clock_timestamp() WHERE id = $1]], id, status, run_id or mv().null, err or mv().null)
end

local function decode_options(text)
  local ok, t = pcall(cjson.decode, text)
  local opts = {}
  if ok and type(t) == "table" then
    for k, v in pairs(t) do if v ~= cjson.null then opts[k] = v end end
  end
  return opts
end

-- Claims one job and runs it. Returns nil when the queue has nothing ready,
-- else { job_id, op, view, status = "success"|"failed", run_id, error,
-- duration_ms }. An interrupt (Ctrl-C) marks the job failed and is re-raised.
function M.work_one(conn)
  conn = conn or mv().conn()
  local job = M.claim(conn)
  if not job then return nil end
  local ok, run = pcall(require("matviews.jobs").run, job.op, job.mat_view_definition_id,
    decode_options(job.options))
  local out = { job_id = job.id, op = job.op, view = job.view }
  if ok then
    out.status, out.run_id, out.error, out.duration_ms = run.status, run.id, run.error, run.duration_ms
  else
    out.status = "failed"
    out.error = error_message(run)
  end
  local conn2 = conn:is_connected() and conn or mv().conn()
  finish(conn2, job.id, out.status == "success" and CODE.success or CODE.failed, out.run_id, out.error)
  if not ok and tostring(out.error):match("interrupted!$") then error(run, 0) end
  return out
end

local DEAD_WORKER = "worker %s on %s ended before finishing this job; failed by reconcile"

-- Fails running jobs whose worker's session is gone; returns them.
function M.reconcile(conn)
  conn = conn or mv().conn()
  return conn:query((sql[[UPDATE matviews_jobs j SET status = {failed}, finished_at = clock_timestamp(),
      updated_at = clock_timestamp(),
      error = format($1::text, coalesce(j.worker_pid::text, '?'), coalesce(j.worker_hostname, '?'))
    WHERE %s RETURNING j.id AS job_id, j.op, j.error,
      (SELECT name FROM mat_view_definitions d WHERE d.id = j.mat_view_definition_id) AS view]])
    :format(require("matviews.jobs").orphaned_sql("j")), DEAD_WORKER)
end

-- Counts of jobs by status: { pending = n, running = n, success = n,
-- failed = n, cancelled = n }.
function M.counts(conn)
  conn = conn or mv().conn()
  local out = {}
  for _, name in pairs(M.STATUS) do out[name] = 0 end
  for _, r in ipairs(conn:query("SELECT status, count(*)::int AS n FROM matviews_jobs GROUP BY status")) do
    if M.STATUS[r.status] then out[M.STATUS[r.status]] = r.n end
  end
  return out
end

-- The jobs, newest first: { id, op, view, status (name), enqueued_at,
-- started_at, finished_at (the one format), worker_hostname, worker_pid,
-- run_id, error, options (table) }. opts: status (a name, or an array of
-- names), limit (default 50).
function M.list(opts, conn)
  opts = opts or {}
  conn = conn or mv().conn()
  local codes = {}
  local wanted = type(opts.status) == "table" and opts.status or { opts.status }
  for _, name in ipairs(wanted) do codes[#codes + 1] = M.STATUS_CODE[name] end
  local iso = require("matviews.format").iso_sql
  local rows = conn:query(([[SELECT j.id, j.op, d.name AS view, j.status, %s AS enqueued_at, %s AS started_at,
      %s AS finished_at, j.worker_hostname, j.worker_pid, j.run_id, j.error, j.options::text AS options
    FROM matviews_jobs j LEFT JOIN mat_view_definitions d ON d.id = j.mat_view_definition_id
    WHERE ($1::int[] IS NULL OR j.status = ANY ($1::int[]))
    ORDER BY j.id DESC LIMIT $2]]):format(iso("j.enqueued_at"), iso("j.started_at"), iso("j.finished_at")),
    #codes > 0 and ("{" .. table.concat(codes, ",") .. "}") or mv().null, opts.limit or 50)
  for _, r in ipairs(rows) do
    r.status = M.STATUS[r.status] or tostring(r.status)
    r.options = require("matviews.format").json_column(r.options)
  end
  return rows
end

-- The job with id, or raises "no job with id N".
local function job(conn, id)
  local r = conn:query("SELECT id, op, mat_view_definition_id, status, options::text AS options FROM matviews_jobs WHERE id = $1", id)[1]
  if not r then mv().error(("no job with id %d"):format(id)) end
  return r
end

-- Queues job id again (a failed or cancelled one) as a new pending job with
-- the same operation, definition and options. Returns { job_id, retry_of }.
function M.retry(id, conn)
  conn = conn or mv().conn()
  return mv().transaction(function(c)
    local j = job(c, id)
    c:exec("SELECT 1 FROM matviews_jobs WHERE id = $1 FOR UPDATE", id)
    if j.status ~= CODE.failed and j.status ~= CODE.cancelled then
      mv().error(("job %d is %s: only failed or cancelled jobs are retried"):format(id, M.STATUS[j.status]))
    end
    local row = c:query([[INSERT INTO matviews_jobs (op, mat_view_definition_id, options)
      VALUES ($1, $2, $3::jsonb) RETURNING id]], j.op, j.mat_view_definition_id, j.options)[1]
    return { job_id = row.id, retry_of = id }
  end, conn)
end

-- Cancels pending job id: it becomes cancelled and no worker claims it. A
-- running job is not interrupted (raises, naming its worker); a finished one
-- raises too. Returns { job_id, status = "cancelled" }.
local CANCEL_SQL = sql[[UPDATE matviews_jobs SET status = {cancelled}, finished_at = clock_timestamp(),
      updated_at = clock_timestamp(), error = $2 WHERE id = $1 AND status = {pending} RETURNING id]]
function M.cancel(id, conn)
  conn = conn or mv().conn()
  local who = core.sys.hostname() .. ":" .. core.sys.getpid()
  local rows = conn:query(CANCEL_SQL,
    id, "cancelled by matviews queue cancel (" .. who .. ")")
  if #rows == 1 then return { job_id = id, status = "cancelled" } end
  local j = conn:query([[SELECT status, worker_hostname, worker_pid, backend_pid FROM matviews_jobs
    WHERE id = $1]], id)[1]
  if not j then mv().error(("no job with id %d"):format(id)) end
  if j.status == CODE.running then
    mv().error(("job %d is running in worker %s:%s; it is not interrupted (stop that worker, or pg_cancel_backend(%s))")
      :format(id, tostring(j.worker_hostname), tostring(j.worker_pid), tostring(j.backend_pid)))
  end
  mv().error(("job %d is %s: only pending jobs are cancelled"):format(id, M.STATUS[j.status] or tostring(j.status)))
end

return M
