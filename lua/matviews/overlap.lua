-- The overlap policy: what a job does when another run of its view holds
-- the view's lock. on_overlap comes from the job (--on-overlap), else the
-- definition's options, else the configuration (default "wait").
--   wait   wait up to lock_wait_ms for the lock, then fail (naming the holder);
--   skip   record a success that did nothing: meta.skipped = "running", with
--          the id and op of the run in progress;
--   queue  one follow-up run after the current one: the first job to find
--          the view busy becomes it (it takes the view's follow-up lock and
--          waits for the view's lock); a job that finds the follow-up taken
--          is recorded like skip, with meta.skipped = "queued".
-- The scheduler's and the worker's jobs go through the same job flow, so
-- they follow the policy too.
local M = {}

M.LIST = { "wait", "skip", "queue" }
M.POLICIES = { wait = true, skip = true, queue = true }
M.DEFAULT = "wait"

local function mv() return require "matviews" end

-- The policy of a job: opts.on_overlap, else the definition's, else the
-- configuration's.
function M.policy(opts, dopts, cfg)
  local p = opts.on_overlap
  if p == nil and type(dopts) == "table" and dopts.on_overlap ~= mv().null then p = dopts.on_overlap end
  if p == nil then p = cfg.on_overlap end
  return p or M.DEFAULT
end

-- The run in progress of definition id, other than run_id: { op, id } or nil.
function M.running(conn, id, run_id)
  local parts = {}
  local vocab = require "matviews.vocab"
  for _, op in ipairs(vocab.OPS) do
    parts[#parts + 1] = ("SELECT '%s' AS op, id, started_at FROM %s WHERE mat_view_definition_id = $1 AND status = %d AND id <> $2")
      :format(op, vocab.RUN_TABLES[op], vocab.STATUS_CODE.running)
  end
  local rows = conn:query("SELECT op, id FROM (" .. table.concat(parts, " UNION ALL ") .. ") x ORDER BY started_at LIMIT 1",
    id, run_id or 0)
  return rows[1]
end

-- The follow-up lock of a view (schema.name): a session advisory lock on the
-- job's service connection, next to the view's own.
local FOLLOW_KEY = "hashtextextended('matviews-follow:' || $1, 0)"

-- Handles a job whose view is busy (job.run:lock failed) under policy skip
-- or queue. Returns true when the job now holds the view's lock and runs (a
-- queue follow-up); else false and the meta of the skipped run (or nil and
-- why the follow-up could not get the lock).
function M.busy(job, policy, wait_ms)
  local conn = job.options.conn
  local key = (job.defn.schema_name or "public") .. "." .. job.view
  if policy == "queue" and conn:query("SELECT pg_try_advisory_lock(" .. FOLLOW_KEY .. ") AS ok", key)[1].ok then
    local ok, locked, why = pcall(job.run.lock, job.run, wait_ms)
    conn:query("SELECT pg_advisory_unlock(" .. FOLLOW_KEY .. ") AS ok", key)
    if not ok then error(locked, 0) end
    if locked then return true end
    return false, nil, why
  end
  local info = job.run:info()
  local r = M.running(conn, info.definition_id, info.id)
  return false, { view = job.view, skipped = policy == "queue" and "queued" or "running", on_overlap = policy,
    running_run_id = r and r.id or mv().null, running_op = r and r.op or mv().null }
end

-- The words for a skipped run: "skipped: refresh run 12 is running".
function M.describe(meta)
  local what = meta.running_run_id ~= nil and meta.running_run_id ~= mv().null
    and ("%s run %s is running"):format(tostring(meta.running_op), tostring(math.tointeger(meta.running_run_id) or meta.running_run_id))
    or "another run is in progress"
  if meta.skipped == "queued" then return "skipped: " .. what .. " and a follow-up is already queued" end
  return "skipped: " .. what
end

return M
