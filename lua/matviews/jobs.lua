-- Jobs: create, refresh and delete views with their runs recorded (`mv.jobs`,
-- shorthands mv.create/refresh/delete). The recording itself is C
-- (core.jobs.run, src/jobs.c); this module fills in the configuration's
-- defaults, gives each job its recorder connection, picks the adapter
-- (job_adapter = "inline" runs here and returns the finalised run; "queue"
-- puts a job row on matviews_jobs and returns { queued = true, job_id = n })
-- and calls the hooks after a run is finalised. It also finds and reconciles
-- orphaned runs: rows left `running` by a process that died.
local core = require "matviews.core"

local M = {}

local catalog = require "matviews.catalog"
local RUN_TABLES = catalog.RUN_TABLES

-- Options of the job itself, not passed on to the service.
local JOB_KEYS = { conn = true, lock_wait_ms = true, statement_timeout_ms = true, retry = true, inline = true,
  record_timeout_ms = true }

local function mv() return require "matviews" end

-- The configured adapter; anything but "inline" or "queue" is an error.
function M.adapter()
  local a = mv().config().job_adapter
  if a ~= "inline" and a ~= "queue" then
    mv().error(('job_adapter must be "inline" or "queue", the configuration says %s')
      :format(type(a) == "string" and ('"' .. a .. '"') or tostring(a)))
  end
  return a
end

-- Recorder connections, one per service connection, opened on first use.
local recorders = setmetatable({}, { __mode = "k" })

-- The connection that writes the run rows of jobs on conn and holds their
-- view locks: a clone of conn (same server, database, user), reused while it
-- answers.
function M.recorder(conn)
  local rec = recorders[conn]
  if rec and rec:is_open() and pcall(rec.exec, rec, "SELECT 1") then return rec end
  if rec then rec:close() end
  rec = conn:clone()
  recorders[conn] = rec
  return rec
end

local function merged(base, over)
  local t = {}
  for k, v in pairs(base or {}) do t[k] = v end
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

-- Runs a job here and now, whatever the adapter: returns the finalised run
-- { id, op, mat_view_definition_id, view, status = "success"|"failed",
-- started_at, finished_at, duration_ms, rows_count, error, meta, backend_pid,
-- hostname, process_pid } after calling the hooks. Raises only when the run
-- cannot be recorded (no such definition, no catalog, database gone).
function M.run(op, ref, opts)
  if not RUN_TABLES[op] then mv().error("unknown job " .. tostring(op) .. " (create, refresh or delete)") end
  opts = opts or {}
  local m = mv()
  local cfg = m.config()
  local default = opts.conn == nil
  local conn = opts.conn or m.conn()
  local options = {}
  for k, v in pairs(opts) do if not JOB_KEYS[k] then options[k] = v end end
  if type(ref) == "string" and not ref:match("^%d+$") then
    -- the C job looks definitions up by id or plain name; a qualified or
    -- ambiguous name is resolved here, in the one place that knows schemas
    local d = m.definitions.find(ref, conn)
    if d then ref = d.id end
  end
  if op == "refresh" then options.lock_timeout_ms = options.lock_timeout_ms or cfg.lock_timeout_ms end
  local run = core.jobs.run {
    op = op, definition = ref, run_conn = M.recorder(conn), conn = conn, options = options,
    lock_wait_ms = opts.lock_wait_ms or cfg.lock_wait_ms,
    record_timeout_ms = opts.record_timeout_ms or cfg.record_timeout_ms,
    lock_timeout_ms = opts.lock_timeout_ms, statement_timeout_ms = opts.statement_timeout_ms,
    default_lock_timeout_ms = cfg.lock_timeout_ms, default_statement_timeout_ms = cfg.statement_timeout_ms,
    default_row_count = cfg.row_count,
    retry = merged(cfg.retry, opts.retry),
    reconnect = function(old)
      local fresh = old:clone()
      if default then m.use(fresh) end
      return fresh
    end,
  }
  require("matviews.hooks").fire(run)
  return run
end

-- A job through the configured adapter: inline returns the run, queue
-- returns { queued = true, job_id = n }. opts.inline forces inline.
function M.submit(op, ref, opts)
  opts = opts or {}
  if not opts.inline and M.adapter() == "queue" then
    return require("matviews.queue").enqueue(op, ref, opts)
  end
  return M.run(op, ref, opts)
end

function M.create(ref, opts) return M.submit("create", ref, opts) end
function M.refresh(ref, opts) return M.submit("refresh", ref, opts) end
function M.delete(ref, opts) return M.submit("delete", ref, opts) end

-- SQL condition true for an orphaned run of the run table aliased `alias`:
-- running, and its recorder backend is gone (no backend with that pid that
-- started before the run did).
function M.orphaned_sql(alias)
  return ([[(A.status = 1 AND A.backend_pid IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity psa WHERE psa.pid = A.backend_pid
      AND (psa.backend_start IS NULL OR psa.backend_start <= A.started_at)))]]):gsub("A%.", alias .. ".")
end

local function orphan_select(op)
  return ([[SELECT '%s' AS op, r.id, r.mat_view_definition_id, d.name AS view, r.started_at,
      r.backend_pid, r.hostname, r.process_pid FROM %s r
    JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE %s]])
    :format(op, RUN_TABLES[op], M.orphaned_sql("r"))
end

-- The orphaned runs of the three run tables: { op, id, mat_view_definition_id,
-- view, started_at, backend_pid, hostname, process_pid }, oldest first.
function M.orphaned_runs(conn)
  conn = conn or mv().conn()
  return conn:query(orphan_select("create") .. " UNION ALL " .. orphan_select("refresh")
    .. " UNION ALL " .. orphan_select("delete") .. " ORDER BY started_at, id")
end

local ORPHAN_ERROR = "orphaned: the process running it (pid %s on %s) ended before finishing; finalised by reconcile"

-- Finalises orphaned runs as failed with an explanatory error; returns them.
local function reconcile_runs(conn)
  local out = {}
  for _, op in ipairs(catalog.OPS) do
    local rows = conn:query(([[UPDATE %s r SET status = 3, finished_at = clock_timestamp(),
        updated_at = clock_timestamp(),
        error = format($1::text, coalesce(r.process_pid::text, '?'), coalesce(r.hostname, '?')),
        meta = r.meta || jsonb_build_object('orphaned', true, 'reconciled_at', clock_timestamp())
      WHERE %s RETURNING r.id, r.mat_view_definition_id, r.backend_pid, r.hostname, r.process_pid,
        r.error, (SELECT name FROM mat_view_definitions d WHERE d.id = r.mat_view_definition_id) AS view]])
      :format(RUN_TABLES[op], M.orphaned_sql("r")), ORPHAN_ERROR)
    for _, r in ipairs(rows) do r.op = op; out[#out + 1] = r end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

-- Finalises orphaned runs as failed, fails queue jobs whose worker died, and
-- drops the relations interrupted swaps left. Returns
-- { runs = {...}, jobs = {...}, dropped = { "schema.rel", ... },
--   skipped = { { relation = "schema.rel", error = "..." }, ... } }.
function M.reconcile(conn)
  conn = conn or mv().conn()
  local out = { runs = reconcile_runs(conn) }
  out.jobs = require("matviews.queue").reconcile(conn)
  out.dropped, out.skipped = M.drop_swap_leftovers(conn)
  return out
end

-- The relations interrupted swaps left: a swap builds into
-- mv_swap_<name>_<backend pid> (<name> cut so it fits in 63 bytes; see
-- src/swap.h), in the schema of its view, and drops it itself on failure,
-- so one whose backend is gone was left by a session that died mid-swap.
-- Only such relations of known definitions, in their own schema, count: a
-- relation of that pattern elsewhere is someone else's. Returns
-- { schema, relname, view }.
function M.swap_leftovers(conn)
  conn = conn or mv().conn()
  return conn:query([[SELECT n.nspname AS schema, c.relname, d.name AS view
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (SELECT (regexp_match(c.relname, '_([0-9]+)$'))[1] AS pid) p
    JOIN mat_view_definitions d
      ON c.relname = 'mv_swap_' || left(d.name, 63 - 8 - length('_' || p.pid)) || '_' || p.pid
      AND n.nspname = d.schema_name
    WHERE c.relkind = 'm' AND c.relname LIKE 'mv\_swap\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p.pid::int)
    ORDER BY 1, 2]])
end

-- Drops the relations interrupted swaps left. One that cannot be dropped
-- (another role's view reads it, no privilege) is skipped, so runs and
-- jobs are still reconciled and workers still start. Returns the dropped
-- "schema.rel" and the skipped { relation, error }.
function M.drop_swap_leftovers(conn)
  conn = conn or mv().conn()
  local dropped, skipped = {}, {}
  for _, r in ipairs(M.swap_leftovers(conn)) do
    local rel = r.schema .. "." .. r.relname
    local ok, e = pcall(conn.exec, conn, ("DROP MATERIALIZED VIEW IF EXISTS %s.%s")
      :format(conn:quote_ident(r.schema), conn:quote_ident(r.relname)))
    if ok then dropped[#dropped + 1] = rel
    else skipped[#skipped + 1] = { relation = rel, error = type(e) == "table" and e.message or tostring(e) } end
  end
  return dropped, skipped
end

return M
