-- The PostgreSQL-backed job queue (job_adapter = "queue"): enqueue inserts a
-- row into matviews_jobs; workers claim pending rows one at a time with
-- FOR UPDATE SKIP LOCKED in a single UPDATE, so several workers, on one
-- machine or many, share one queue and each job runs once. The claimed job
-- runs inline (matviews.jobs.run) and its row gets the run's outcome.
local cjson = require "cjson"
local core = require "matviews.core"

local M = {}

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
  if op ~= "create" and op ~= "refresh" and op ~= "delete" then
    mv().error("unknown job " .. tostring(op) .. " (create, refresh or delete)")
  end
  opts = opts or {}
  local conn = opts.conn or mv().conn()
  local d = M.definition(conn, ref)
  local row = conn:query([[INSERT INTO matviews_jobs (op, mat_view_definition_id, options)
    VALUES ($1, $2, $3::jsonb) RETURNING id]], op, d.id, cjson.encode(portable(opts)))[1]
  return { queued = true, job_id = row.id, op = op, view = d.name }
end

-- Claims the oldest pending job for this process; nil when there is none.
function M.claim(conn)
  local rows = conn:query([[UPDATE matviews_jobs j SET status = 1, started_at = clock_timestamp(),
      worker_hostname = $1, worker_pid = $2, backend_pid = pg_backend_pid(), updated_at = clock_timestamp()
    WHERE j.id = (SELECT id FROM matviews_jobs WHERE status = 0 AND run_after <= clock_timestamp()
                  ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1) AND j.status = 0
    RETURNING j.id, j.op, j.mat_view_definition_id, j.options,
      (SELECT name FROM mat_view_definitions d WHERE d.id = j.mat_view_definition_id) AS view]],
    core.sys.hostname(), core.sys.getpid())
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
    out.error = type(run) == "table" and tostring(run.message or run) or tostring(run)
  end
  local conn2 = conn:is_connected() and conn or mv().conn()
  finish(conn2, job.id, out.status == "success" and 2 or 3, out.run_id, out.error)
  if not ok and tostring(out.error):match("interrupted!$") then error(run, 0) end
  return out
end

local DEAD_WORKER = "worker %s on %s ended before finishing this job; failed by reconcile"

-- Fails running jobs whose worker's session is gone; returns them.
function M.reconcile(conn)
  conn = conn or mv().conn()
  return conn:query(([[UPDATE matviews_jobs j SET status = 3, finished_at = clock_timestamp(),
      updated_at = clock_timestamp(),
      error = format($1::text, coalesce(j.worker_pid::text, '?'), coalesce(j.worker_hostname, '?'))
    WHERE %s RETURNING j.id AS job_id, j.op, j.error,
      (SELECT name FROM mat_view_definitions d WHERE d.id = j.mat_view_definition_id) AS view]])
    :format(require("matviews.jobs").orphaned_sql("j")), DEAD_WORKER)
end

-- Counts of jobs by status: { pending = n, running = n, success = n, failed = n }.
function M.counts(conn)
  conn = conn or mv().conn()
  local names = { [0] = "pending", "running", "success", "failed" }
  local out = { pending = 0, running = 0, success = 0, failed = 0 }
  for _, r in ipairs(conn:query("SELECT status, count(*)::int AS n FROM matviews_jobs GROUP BY status")) do
    if names[r.status] then out[names[r.status]] = r.n end
  end
  return out
end

return M
