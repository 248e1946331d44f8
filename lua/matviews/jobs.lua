-- Jobs: create, refresh and delete views with their runs recorded (`mv.jobs`,
-- shorthands mv.create/refresh/delete). The job flow is here, top-down:
-- the CLI (or a script) calls M.run; M.run calls the run recorder and the
-- view services, both C primitives (core.recorder, core.services through
-- mv.services), which call pg.c. Nothing below calls back up.
--
-- One run: begin (one statement on the recorder: the definition row read,
-- once, the run row inserted, the view's lock tried), the lock waited for if
-- another job holds it, the service called (retrying transient failures
-- with backoff), finish (one statement: the row finalised, the lock
-- released), the hooks. The run is held in a to-be-closed variable: an
-- error anywhere between begin and finish finalises it as failed and
-- releases the lock (recorder.c's __close) before it propagates.
--
-- The adapter (job_adapter = "inline" runs here and returns the finalised
-- run; "queue" puts a job row on matviews_jobs and returns { queued = true,
-- job_id = n }) is picked from the configuration. This module also finds and
-- reconciles orphaned runs: rows left `running` by a process that died.
local core = require "matviews.core"
local vocab = require "matviews.vocab"
local recorder = core.recorder
local error_message = core.error_message -- the text of a caught error

local M = {}

local RUN_TABLES = vocab.RUN_TABLES

-- Options of the job itself, not passed on to the service.
local JOB_KEYS = { conn = true, lock_wait_ms = true, statement_timeout_ms = true, retry = true, inline = true, args = true,
  record_timeout_ms = true, defer_flush = true, pipeline_finish = true, ahead = true, on_started = true,
  overlap = true }

-- Of those, the ones that belong to the process running a batch, not to
-- a job put on the queue.
local BATCH_KEYS = { defer_flush = true, pipeline_finish = true, ahead = true, on_started = true, overlap = true }

-- SQLSTATEs a new attempt may fix, and the reason recorded for each.
local RETRYABLE = { ["55P03"] = "lock_not_available", ["40P01"] = "deadlock_detected",
  ["40001"] = "serialization_failure" }

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
-- view locks: a clone of conn (same server, database, user), reused while
-- it is connected (one that broke mid-run is reconnected by the recorder).
function M.recorder(conn)
  local rec = recorders[conn]
  if rec and rec:is_open() and rec:is_connected() then return rec end
  if rec and rec:is_open() then recorder.settle(rec) end -- a pending finish is written again first
  if rec and rec:is_open() and rec:is_connected() then return rec end
  if rec then rec:close() end
  rec = conn:clone()
  recorders[conn] = rec
  return rec
end

-- Starts opening the recorder connection of conn (when it has none and
-- jobs run here): the server starts its backend while the caller reads
-- the catalog, and M.recorder completes it on first use.
function M.recorder_early(conn)
  if recorders[conn] == nil and M.adapter() == "inline" then recorders[conn] = conn:clone(true) end
end

local function merged(base, over)
  local t = {}
  for k, v in pairs(base or {}) do t[k] = v end
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

-- A JSON-able copy of v (strings, numbers, booleans, mv.null, tables of
-- those); anything else becomes nil.
local NULL = core.null
local function jsonable(v, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or v == NULL then return v end
  depth = depth or 0
  if t ~= "table" or depth > 16 then return nil end
  local out = {}
  for k, x in pairs(v) do
    local kt = type(k)
    if kt == "string" or kt == "number" then out[k] = jsonable(x, depth + 1) end
  end
  return out
end

-- A service-shaped error response; raised marks an exception.
local function error_response(view, e, raised)
  local msg = type(e) == "table" and e.message or e
  return { status = "error", success = false, view = view, raised = raised or nil,
    error = { message = tostring(msg or "the service raised an error"),
              sqlstate = type(e) == "table" and e.sqlstate or nil,
              details = type(e) == "table" and jsonable(e.details) or nil } }
end

-- Why the response may be retried on conn: the reason, or nil.
local function retry_reason(resp, conn, op)
  if resp.retry_reason then return resp.retry_reason end
  if resp.success or resp.raised then return nil end
  local st = type(resp.error) == "table" and resp.error.sqlstate or nil
  if RETRYABLE[st] then return RETRYABLE[st] end
  if op == "refresh" and not (conn:is_open() and conn:is_connected()) then return "connection_lost" end
  return nil
end

-- The backoff before attempt n+1: min(max, base * 2^(n-1)), with jitter
-- drawn from its upper half.
local function backoff_ms(retry, n)
  local base, max = retry.base_ms or 200, retry.max_ms or 5000
  local d = math.min(max, base * 2 ^ (n - 1))
  local half = math.floor(d / 2)
  return half + (half > 0 and math.random(0, half) or 0)
end

-- A refresh through its strategy (matviews.strategies): a built-in one
-- returns the service's response, as the service would; a failed step
-- raises with the response, which is kept. A user strategy's value goes
-- into meta.result, and its run succeeds unless it raised or ctx:fail-ed;
-- the error then names the strategy and where it is declared (ctx:fail's
-- details go to meta.error.details); one that a new attempt may fix (a
-- RETRYABLE SQLSTATE, a lost connection) is retried. Returns ok
-- and the response or the error.
local function keep_error(e) return e end
local function call_strategy(job)
  local s = job.strategy_def
  local ctx = require("matviews.strategies").context(job)
  local fn = s.fn
  if not s.builtin then -- user code: under the configured instruction budget, as definition files are
    fn = function(c) return require("matviews.config").bounded(("strategy \"%s\""):format(s.name), s.fn, c) end
  end
  local ok, r = xpcall(fn, keep_error, ctx)
  ctx:close()
  job.audit = ctx.audit or (type(r) == "table" and not ok and r.audit) or job.audit
  if s.builtin then
    if not ok and type(r) == "table" and type(r.response) == "table" and not r.audit then return true, r.response end
    return ok, r
  end
  if ok then
    job.result = jsonable(r)
    local resp = ctx.response or { status = "updated", view = job.view, request = {}, response = {} }
    if not resp.success then resp = { status = "updated", view = resp.view, request = resp.request, response = resp.response } end
    resp.success = true
    return true, resp
  end
  local msg = error_message(r)
  local e = { message = ("strategy \"%s\" (%s:%d) failed: %s"):format(s.name, s.file, s.line, msg),
    sqlstate = type(r) == "table" and r.sqlstate or nil, details = type(r) == "table" and r.details or nil }
  local conn = job.options.conn
  if RETRYABLE[e.sqlstate] or not (conn:is_open() and conn:is_connected()) then
    return true, error_response(job.view, e) -- a response, so the attempt is retried as a service's would be
  end
  return false, e
end

-- One attempt: the session timeouts wanted (sent with the service's first
-- statement, put back before the caller's next one), the service (or, for
-- a refresh, the strategy) called protected. Returns the response (a
-- table, always) and the attempt record.
local function attempt(job, n)
  local started, t = recorder.now_iso(), core.sys.monotonic_ms()
  local conn, resp = job.options.conn, nil
  if not (conn:is_open()) then
    resp = error_response(job.view, "the service connection is closed")
  else
    recorder.want_timeouts(conn, job.lock_timeout, job.statement_timeout, true)
    job.run:watch(true, conn)
    local ok, r
    if job.strategy_def then ok, r = call_strategy(job)
    else ok, r = pcall(job.service, job.defn, job.options) end
    local lost = job.run:watch(false)
    recorder.restore_timeouts(conn)
    if not ok then resp = error_response(job.view, r, true)
    elseif type(r) ~= "table" then resp = error_response(job.view, "the service returned no response table", true)
    else resp = r end
    local cancelled = not ok or resp.success or (type(resp.error) == "table" and resp.error.sqlstate == "57014")
    if lost and cancelled then
      local why = ": lost the view's lock (the session holding it ended); the "
        .. (ok and "service's statement was cancelled" or "service stopped")
      -- a session ended while a finish of the batch was pending on it (one
      -- still unread when this view started, run:confirm, or sent while it
      -- ran, M.start_held): taken over on a new one, the attempt is made
      -- again (run:regain)
      local regained = job.run:regain()
      resp = error_response(job.view, job.view .. why .. (regained and "; the view's run was taken over by a new session" or ""),
        not regained)
      resp.retry_reason = regained and "recorder_lost" or nil
    end
  end
  local rec = { attempt = n, status = resp.status, error = jsonable(resp.error), started_at = started,
    finished_at = recorder.now_iso(), duration_ms = math.floor(core.sys.monotonic_ms() - t + 0.5) }
  return resp, rec
end

-- Calls the service until it succeeds, fails for good, or the attempts run
-- out; returns the last response and the attempt records.
local function attempts(job)
  local records, max = {}, math.max(1, job.retry.attempts or 3)
  for n = 1, math.huge do
    local resp, rec = attempt(job, n)
    records[n] = rec
    local why = retry_reason(resp, job.options.conn, job.op)
    if why == nil or n >= max or recorder.pending() then return resp, records end
    local wait = backoff_ms(job.retry, n)
    rec.retry_reason, rec.retry_in_ms = why, wait
    if not recorder.sleep(wait) then return resp, records end
    if why == "connection_lost" then
      local ok, fresh = pcall(job.reconnect, job.options.conn)
      if not ok then rec.reconnect_error = error_message(fresh); return resp, records end
      job.options.conn = fresh
    end
  end
end

-- The run's meta from the final response: the request's keys at top level
-- (row_count_strategy, force, cascade, if_exists, ...), view, strategy, sql,
-- lock_ms, row counts, request/response/error whole, the attempts and the
-- lock wait.
local function final_meta(job, resp, records)
  local meta = {}
  -- each copied once: the request's keys, meta.sql and meta.lock_ms are
  -- those of the copies kept whole in meta.request and meta.response
  local request, response = jsonable(resp.request), jsonable(resp.response)
  if type(request) == "table" then for k, v in pairs(request) do meta[k] = v end end
  local inner = type(response) == "table" and response or {}
  meta.sql, meta.lock_ms = inner.sql, inner.lock_ms
  meta.row_count_before, meta.row_count_after = inner.row_count_before, inner.row_count_after
  meta.view = jsonable(resp.view) or job.view
  meta.service_status = jsonable(resp.status)
  meta.request, meta.response, meta.error = request, response, jsonable(resp.error)
  if job.op == "refresh" then meta.strategy = job.strategy end
  meta.result, meta.audit = job.result, job.audit
  meta.attempts = records
  meta.lock_wait_ms = job.run:info().lock_wait_ms
  return meta
end

-- The outcome recorder.finish takes, from the final response.
local function outcome(job, resp, records)
  local meta = final_meta(job, resp, records)
  local o = { status = resp.success and "success" or "failed", meta = meta }
  if not resp.success then
    o.error = type(resp.error) == "table" and resp.error.message and tostring(resp.error.message) or "the service failed"
  end
  local after = meta.row_count_after
  if job.op == "refresh" and job.options.row_count_strategy ~= "none" and math.type(after) == "integer" and after >= 0 then
    o.rows_count = after
  end
  return o
end

-- "5000ms" from a count of milliseconds.
local function ms(n) return ("%dms"):format(math.max(0, math.tointeger(n) or 0)) end

-- The job's settings from its definition (read by begin), the job options
-- and the configuration: service, timeouts, row count strategy.
local function settle(job, defn, opts, cfg)
  local dopts = defn.options or {}
  job.defn, job.view = defn, defn.name
  job.strategy = dopts.strategy or defn.refresh_strategy
  if job.op == "refresh" then
    job.strategy_def = require("matviews.strategies").of_definition(defn)
  else
    job.service = mv().services[job.op .. "_view"]
  end
  job.args = opts.args
  job.lock_timeout = ms(opts.lock_timeout_ms or dopts.lock_timeout_ms or cfg.lock_timeout_ms)
  -- none set: the session keeps its own (the server's, role's or database's)
  local st = opts.statement_timeout_ms or dopts.statement_timeout_ms or cfg.statement_timeout_ms
  job.statement_timeout = st and ms(st) or nil
  if job.options.row_count_strategy == nil then job.options.row_count_strategy = dopts.row_count or cfg.row_count end
end

-- The body of a run, between begin and finish: the definition checked,
-- the lock, the attempts. Returns the outcome.
local function run_body(job, row, opts, cfg)
  local ok, defn = pcall(require("matviews.definitions").from_row, row)
  if not ok then
    job.view = row.name
    local resp = error_response(row.name, defn, true)
    return outcome(job, resp, { { attempt = 1, status = "error", error = jsonable(resp.error) } })
  end
  local sok, why = pcall(settle, job, defn, opts, cfg)
  if not sok then
    local resp = error_response(job.view or row.name, why, true)
    return outcome(job, resp, { { attempt = 1, status = "error", error = jsonable(resp.error) } })
  end
  local overlap = require "matviews.overlap"
  local policy, wait = overlap.policy(opts, defn.options, cfg), opts.lock_wait_ms or cfg.lock_wait_ms
  local locked, why = job.run:lock(policy == "wait" and wait or 0)
  if not locked and policy ~= "wait" then
    local skipped
    locked, skipped, why = overlap.busy(job, policy, wait)
    if skipped then return { status = "success", meta = skipped } end
  end
  if not locked then return outcome(job, error_response(job.view, why), {}) end
  -- skip-unchanged (matviews.changes): only a view that asks pays for it
  local changes = require "matviews.changes"
  local track = job.op ~= "delete" and changes.wanted(opts, defn.options)
  if track and job.op == "refresh" then
    local skip = changes.check(job.options.conn, defn)
    if skip then return { status = "success", meta = skip } end
  end
  -- a view that says refresh_when = "changed" records its snapshot even
  -- when this job forced it (--no-if-changed): the next check compares with it
  local snap = (track or (job.op ~= "delete" and changes.tracked(defn.options)))
    and changes.snapshot(job.options.conn) or nil
  local confirmed, lost = job.run:confirm() -- a run begun ahead: its recorder's session checked
  if not confirmed then return outcome(job, error_response(job.view, lost), {}) end
  if opts.on_started then opts.on_started() end -- the caller's (a pool worker answers the run before)
  if job.ahead then job.ahead() end
  local o = outcome(job, attempts(job))
  if o.status == "success" then o.meta.snapshot = snap end
  return o
end

-- Records a run of op on definition `def` ({ id, name }) that never
-- started, as failed with `message`, on conn (the caller's own connection,
-- when the recorder's could not be had), waiting at most
-- record_timeout_ms for the run table. Returns the finalised run.
function M.record_failed(conn, op, def, message, meta, record_timeout_ms)
  local m = mv()
  local sys = m.core.sys
  meta = merged({ view = def.name }, meta)
  local row = m.transaction(function()
    conn:exec("SELECT set_config('lock_timeout', $1, true)",
      ms(record_timeout_ms or m.config().record_timeout_ms))
    return conn:query(([[INSERT INTO %s (mat_view_definition_id, status, started_at, finished_at, duration_ms,
        error, meta, hostname, process_pid)
      VALUES ($1, $2, now(), now(), 0, $3, $4, $5, $6) RETURNING id, started_at, finished_at]]):format(RUN_TABLES[op]),
      def.id, vocab.STATUS_CODE.failed, message, meta, sys.hostname(), sys.getpid())[1]
  end, conn)
  return { id = row.id, op = op, mat_view_definition_id = def.id, view = def.name, status = "failed",
    started_at = row.started_at, finished_at = row.finished_at, duration_ms = 0, error = message, meta = meta,
    hostname = sys.hostname(), process_pid = sys.getpid() }
end

-- The recorder of conn; when the server gives it no connection (no free
-- slot after connect_wait_ms, a refusal), the run is recorded as failed on
-- conn itself (returned second), so that the view still gets its run row.
local function recorder_or_failed_run(op, ref, conn, cfg, opts)
  local ok, rec = pcall(M.recorder, conn)
  if ok then return rec end
  local def = (conn:is_open() and conn:is_connected()) and mv().definitions.find(ref, conn)
  if not def then error(rec, 0) end
  local message = error_message(rec)
  local rok, run = pcall(M.record_failed, conn, op, def, message, { recorder_unavailable = true },
    opts.record_timeout_ms or cfg.record_timeout_ms)
  if not rok then error(rec, 0) end
  return nil, run
end

-- What recorder.begin (or begin_ahead) takes for a run of op on ref (a
-- name, "schema.name" or an id) with the job's request options.
local function begin_spec(op, ref, request, opts, cfg)
  local defs = mv().definitions
  local schema, name
  if type(ref) == "string" then schema, name = defs.split(ref) else name = ref end
  return { op = op, definition = name, schema = schema, columns = defs.COLUMNS, meta = { request = request },
    record_timeout_ms = opts.record_timeout_ms or cfg.record_timeout_ms }
end

-- One recorded run; returns the finalised run, or with finish_later the
-- run (detached from this scope) and the outcome its finish takes.
local function run_job(op, ref, opts, finish_later)
  local m = mv()
  local cfg = m.config()
  local default = opts.conn == nil
  local conn = opts.conn or m.conn()
  local options = {}
  for k, v in pairs(opts) do if not JOB_KEYS[k] then options[k] = v end end
  if op == "refresh" then options.lock_timeout_ms = options.lock_timeout_ms or cfg.lock_timeout_ms end
  local job = { op = op, retry = merged(cfg.retry, opts.retry) }
  job.reconnect = function(old)
    local fresh = old:clone()
    if default then m.use(fresh) end
    return fresh
  end
  local rec, failed = recorder_or_failed_run(op, ref, conn, cfg, opts)
  if failed then return failed end
  local request = jsonable(options)
  local run <close>, row = recorder.begin(rec, begin_spec(op, ref, request, opts, cfg))
  if run == nil then m.definitions.find(ref, conn) end -- a plain name in several schemas: raises, naming them
  job.run = run
  options.conn = conn
  job.options = options
  -- a batch's run with more to come (pipeline_finish): the finish is sent
  -- without waiting for its result, read before the recorder's next
  -- statement, unless a hook is to see the row
  local pipelined = opts.defer_flush and opts.pipeline_finish and not require("matviews.hooks").any()
  if opts.defer_flush and opts.ahead ~= nil and cfg.begin_ahead_ms > 0 then
    -- a batch's next run (opts.ahead, with the same options: a sequential
    -- batch's next view, the one queued on a pool worker) is begun as this
    -- one's service starts, so that the server writes its row while this
    -- view refreshes (recorder.begin_ahead; withdrawn when this view runs
    -- long)
    job.ahead = function()
      if recorder.pending() then return end
      local spec = begin_spec(op, opts.ahead, request, opts, cfg)
      spec.ahead_ms = cfg.begin_ahead_ms
      pcall(recorder.begin_ahead, rec, spec)
    end
  end
  -- opts.overlap: the batch's work that waits for a REFRESH (see
  -- M.start_held), done while this view's REFRESH runs (strategies.lua
  -- Ctx:refresh), else before this run is finished
  if opts.overlap then
    -- the next view's begin ahead goes with it, off the way to the REFRESH
    local left, ahead = opts.overlap, job.ahead
    job.ahead = nil
    job.overlap = function()
      local f = left
      left = nil
      if f then f(); if ahead then ahead() end end
    end
  end
  local ok, outcome = pcall(run_body, job, row, opts, cfg)
  if job.overlap then job.overlap() end
  if not ok then error(outcome, 0) end
  outcome.defer_flush = opts.defer_flush
  outcome.pipelined = pipelined
  -- its duration ends here, not when the row is written
  if finish_later then outcome.ended_ms = core.sys.monotonic_ms(); return run:detach(), outcome end
  return run:finish(outcome)
end

-- opts.defer_flush (refresh batches: `refresh NAME...|--all`, the parallel
-- workers): the run's finish commits without waiting for its WAL flush, and
-- the batch calls M.flush when it ends. What a run records stays as true:
-- the finish is written after the view's REFRESH committed, and PostgreSQL
-- flushes a REFRESH's commit whatever synchronous_commit says (it drops the
-- old files), so a run never reads success for a refresh that is not
-- durable; the next view's REFRESH flushes the finish before it (the WAL is
-- one stream), M.flush the last. See docs/reliability.md.

-- Makes the finishes that deferred their flush durable: one synchronous
-- commit on each recorder connection that has one. A failure is left to
-- the server's WAL writer (it flushes within a second).
function M.flush()
  for _, rec in pairs(recorders) do
    if rec:is_open() and rec:is_connected() then pcall(recorder.flush, rec) end
  end
end

-- Raises unless op is a job (create, refresh, delete).
local function check_op(op)
  if not RUN_TABLES[op] then mv().error("unknown job " .. tostring(op) .. " (" .. vocab.OPS_TEXT .. ")") end
end

-- Runs a job here and now, whatever the adapter: returns the finalised run
-- { id, op, mat_view_definition_id, view, status = "success"|"failed",
-- started_at, finished_at, duration_ms, lock_wait_ms, rows_count, error,
-- meta, backend_pid, hostname, process_pid } after calling the hooks.
-- Raises only when the run cannot be recorded (no such definition, no
-- catalog, database gone). A SIGINT outside a statement is held until the
-- run is finalised, then raised as "interrupted!"; one during a statement
-- cancels it (the run fails with the cancel).
local function run_guarded(op, ref, opts)
  check_op(op)
  local held = recorder.hold()
  local ok, run = pcall(run_job, op, ref, opts or {})
  local interrupted = recorder.release(held)
  if not ok then error(run, 0) end
  require("matviews.hooks").fire(run)
  return run, interrupted
end

function M.run(op, ref, opts)
  local run, interrupted = run_guarded(op, ref, opts)
  if interrupted then error("interrupted!", 0) end
  return run
end

-- M.run for callers that hold SIGINT themselves (recorder.hold: the pool
-- workers, the parallel coordinator): a SIGINT stays pending for them.
function M.run_held(op, ref, opts)
  return (run_guarded(op, ref, opts))
end

-- M.run_held with the run's finish left to the caller (a sequential
-- refresh batch, which holds SIGINT for the whole batch): returns a
-- function that finishes the run, fires the hooks and returns the run as
-- M.run_held would, to be called once, before the next run of the batch
-- is finished. The batch passes it to the next view's job as
-- opts.overlap, which calls it while its own REFRESH runs: the finish and
-- the line of a view cost the batch no time. A run that is never finished
-- is finished as failed when it is collected.
function M.start_held(op, ref, opts)
  check_op(op)
  local run, outcome = run_job(op, ref, opts or {}, true)
  return function()
    if outcome then run = run:finish(outcome); outcome = nil end
    require("matviews.hooks").fire(run)
    return run
  end
end

-- A job through the configured adapter: inline returns the run, queue
-- returns { queued = true, job_id = n }. opts.inline forces inline.
function M.submit(op, ref, opts)
  opts = opts or {}
  if not opts.inline and M.adapter() == "queue" then
    -- BATCH_KEYS belong to the process that runs the batch, not to the job
    local q = {}
    for k, v in pairs(opts) do if not BATCH_KEYS[k] then q[k] = v end end
    return require("matviews.queue").enqueue(op, ref, q)
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
  return (vocab.sql[[(A.status = {running} AND A.backend_pid IS NOT NULL AND NOT EXISTS (
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
  local selects = {}
  for i, op in ipairs(vocab.OPS) do selects[i] = orphan_select(op) end
  return conn:query(table.concat(selects, " UNION ALL ") .. " ORDER BY started_at, id")
end

local ORPHAN_ERROR = "orphaned: the process running it (pid %s on %s) ended before finishing; finalised by reconcile"

-- Finalises orphaned runs as failed with an explanatory error; returns them.
local function reconcile_runs(conn)
  local out = {}
  for _, op in ipairs(vocab.OPS) do
    local rows = conn:query((vocab.sql[[UPDATE %s r SET status = {failed}, finished_at = clock_timestamp(),
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
      ON c.relname = ]] .. vocab.build_relation_sql("d.name", "p.pid") .. [[
      AND n.nspname = d.schema_name
    WHERE c.relkind = 'm' AND starts_with(c.relname, ']] .. vocab.BUILD_PREFIX .. [[')
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
    else skipped[#skipped + 1] = { relation = rel, error = error_message(e) } end
  end
  return dropped, skipped
end

return M
