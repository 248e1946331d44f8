-- What `create`, `refresh` and `delete` share: the NAME.../--id/--all
-- arguments, options from the command line over the environment
-- (MATVIEWS_FORCE, MATVIEWS_CASCADE, MATVIEWS_ROW_COUNT_STRATEGY: prefixed,
-- so a FORCE exported for another tool changes nothing here) over the
-- configuration, the confirmation,
-- running each view's job through mv.jobs, progress, and the exit code
-- (0 all ok, 1 some operation failed, 2 usage, 3 aborted).
local output = require "matviews.output"
local prompt = require "matviews.prompt"
local progress = require "matviews.progress"
local targets = require "matviews.targets"
local error_message = require("matviews.core").error_message -- the text of a caught error
local ROW_COUNTS = require("matviews.definitions").ROW_COUNTS

local M = {}

local TRUE = { ["1"] = true, ["true"] = true, yes = true, on = true }
local FALSE = { ["0"] = true, ["false"] = true, no = true, off = true, [""] = true }

-- Adds NAME..., --id N (repeatable) and --all to an argparse command, and
-- the epilog that says how names are resolved.
function M.configure_targets(cmd)
  cmd:argument("names", "Definition names (schema-qualified allowed)."):args("*")
  cmd:option("--id", "A definition id (repeatable)."):args(1):count("*"):convert(math.tointeger)
  cmd:flag("--all", "Every definition, in dependency order.")
  cmd:epilog("Unknown names, or a schema-qualified materialized view without a definition, exit 2 before anything runs.")
end

-- Adds --on-overlap wait|skip|queue (over the definition's and the
-- configuration's on_overlap; see matviews.overlap).
function M.configure_overlap(cmd)
  cmd:option("--on-overlap", "When another run of the view is in progress: wait, skip (record it skipped) or queue (one follow-up).")
    :choices(require("matviews.overlap").LIST)
end

-- Adds --arg KEY=VALUE (repeatable): the strategy's ctx.args.
function M.configure_args(cmd)
  cmd:option("--arg", "KEY=VALUE for the view's strategy (ctx.args); repeatable."):args(1):count("*")
end

-- The table of --arg KEY=VALUE pairs, or nil when none; a pair without =
-- is a usage error.
function M.strategy_args(args)
  local out
  for _, kv in ipairs(args.arg or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then require("matviews.targets").usage(("--arg takes KEY=VALUE, got %q"):format(kv)) end
    out = out or {}
    out[k] = v
  end
  return out
end

-- Adds --row-count S (see M.row_count); help says when it is counted.
function M.configure_row_count(cmd, help)
  cmd:option("--row-count", help):choices(require("matviews.definitions").ROW_COUNT_LIST)
end

-- Adds a boolean option with its --no- form: --KEY / --no-KEY (over env).
function M.configure_flag(cmd, key, env, help)
  cmd:flag("--" .. key, help .. (" (default: env %s)"):format(env))
  cmd:flag("--no-" .. key, ("Not --%s, whatever %s says."):format(key, env))
end

-- The environment variable name as a boolean (nil when unset); raises a
-- usage error on a value that is no boolean.
function M.env_bool(name)
  local v = os.getenv(name)
  if v == nil then return nil end
  local l = v:lower()
  if TRUE[l] then return true end
  if FALSE[l] then return false end
  targets.usage(("%s must be 1 or 0 (true/false, yes/no), not %q"):format(name, v))
end

-- A boolean option without an environment default: true (--key), false
-- (--no-key) or nil (neither); both is a usage error.
function M.flag_or_nil(args, key)
  local k = key:gsub("-", "_")
  local yes, no = args[k], args["no_" .. k]
  if yes and no then targets.usage(("give --%s or --no-%s, not both"):format(key, key)) end
  if yes then return true end
  if no then return false end
  return nil
end

-- A boolean option: --key or --no-key, else env, else false.
function M.flag(args, key, env)
  local yes, no = args[key], args["no_" .. key:gsub("-", "_")]
  if yes and no then targets.usage(("give --%s or --no-%s, not both"):format(key, key)) end
  if yes then return true end
  if no then return false end
  local e = M.env_bool(env)
  if e ~= nil then return e end
  return false
end

-- The environment variables that set defaults of create, refresh and delete.
M.ENV = { force = "MATVIEWS_FORCE", cascade = "MATVIEWS_CASCADE", row_count = "MATVIEWS_ROW_COUNT_STRATEGY" }

-- The row count strategy: --row-count, else MATVIEWS_ROW_COUNT_STRATEGY, else
-- nil (the job then takes the definition's row_count, else the configuration's).
function M.row_count(args)
  if args.row_count then return args.row_count end
  local e = os.getenv(M.ENV.row_count)
  if e and e ~= "" then
    if not ROW_COUNTS[e] then
      targets.usage(("%s must be none, estimated or exact, not %q"):format(M.ENV.row_count, e))
    end
    return e
  end
  return nil
end

-- Names (strings) as "a, b, c", or "a, ..., j and 7 more" past ten.
function M.name_list(names)
  local s = table.concat(names, ", ", 1, math.min(#names, 10))
  if #names > 10 then s = s .. (" and %d more"):format(#names - 10) end
  return s
end

-- "1.2 s" or "340 ms".
local function span(ms)
  if ms >= 1000 then return ("%.1f s"):format(ms / 1000) end
  return ("%d ms"):format(ms)
end

-- The result line of one view's run (queued, or status, the run's recorded
-- duration, rows, the time it waited for the view's lock when it had to,
-- and, unless it succeeded, the error). Sequential and parallel refresh
-- print the same line.
function M.result_text(op, name, run)
  if run.queued then return ("%s %s: queued (job %s)"):format(op, name, tostring(run.job_id)) end
  if run.status == "success" and type(run.meta) == "table" and run.meta.skipped == "unchanged" then
    return ("%s %s: skipped: no source changed since the last refresh"):format(op, name)
  end
  if run.status == "success" and type(run.meta) == "table" and run.meta.skipped then
    return ("%s %s: %s"):format(op, name, require("matviews.overlap").describe(run.meta))
  end
  local s = ("%s %s: %s"):format(op, name, tostring(run.status))
  if math.type(run.duration_ms) == "integer" then s = s .. (" in %d ms"):format(run.duration_ms) end
  if math.type(run.rows_count) == "integer" then s = s .. ", " .. require("matviews.format").count(run.rows_count, "row") end
  if math.type(run.lock_wait_ms) == "integer" and run.lock_wait_ms > 0 then
    s = s .. (" (waited %s for the lock)"):format(span(run.lock_wait_ms))
  end
  if run.status ~= "success" and run.error ~= nil and run.error ~= output.null then
    s = s .. ": " .. tostring(run.error)
    local note = require("matviews.run_detail").lock_note(run)
    if note then s = s .. " " .. note end
  end
  return s
end

-- The result of definition d's job op from what a pcall of it gave: the
-- run, or a failed result when it raised (run: the error) or returned no run.
local function as_run(op, d, ok, run)
  if ok and type(run) == "table" then return run end
  return { op = op, view = d.name, mat_view_definition_id = d.id, status = "failed",
    error = ok and "the job returned no run" or error_message(run) }
end

-- Runs job op for one definition; a raised error becomes a failed result.
local function run_one(mv, op, d, opts)
  return as_run(op, d, pcall(mv.jobs[op], d.name, opts))
end

-- The runs that failed, counted once every finish is read (mv.jobs.flush):
-- a finish that could not be written makes its run failed.
local function failures(results)
  local n = 0
  for _, run in ipairs(results) do
    if not run.queued and run.status ~= "success" then n = n + 1 end
  end
  return n
end

-- Runs op ("create"|"refresh"|"delete") over the targets of args with
-- the job options jopts. Returns the exit code.
function M.run(op, args, ctx, jopts, verbs)
  local mv = ctx.mv
  if mv.jobs and not (jopts and jopts.conn) then mv.jobs.recorder_early(mv.conn()) end
  local defs = targets.resolve(mv.conn(), args, { reverse = op == "delete" })
  if #defs == 0 then
    if ctx.options.json then output.json(output.array()) else io.stderr:write("no definitions\n") end
    return 0
  end
  local names = {}
  for i, d in ipairs(defs) do names[i] = d.name end
  local what = ("%s %d materialized view%s: %s"):format(op, #defs, #defs == 1 and "" or "s", M.name_list(names))
  if not prompt.confirm(ctx, what) then
    if not prompt.must_refuse(ctx) then io.stderr:write("aborted\n") end
    return prompt.ABORTED
  end
  if not (mv.jobs and mv.jobs[op]) then mv.error({ message = "jobs are not available in this build" }) end
  local p = progress.new({ total = #defs, verb = verbs, quiet = ctx.options.json, op = op })
  local results = output.array()
  local sys = mv.core.sys
  sys.clear_stop()
  -- a refresh batch defers each finish's WAL flush to the next view's
  -- REFRESH, and flushes the last one when it ends (matviews.jobs)
  -- and sends each finish but the last without waiting for its result
  -- (read before the next view's begin: docs/reliability.md), the next
  -- view's begin sent before it (opts.ahead: matviews.jobs)
  local piped = jopts
  if op == "refresh" and not (jopts and jopts.defer_flush ~= nil) then
    local j, q = {}, {}
    for k, v in pairs(jopts or {}) do j[k] = v; q[k] = v end
    j.defer_flush, q.defer_flush, q.pipeline_finish = true, true, true
    jopts, piped = j, q
  end
  -- Each view's run is finished, and its line printed, while the next
  -- view's REFRESH runs (jobs.start_held, opts.overlap): `tail` finishes
  -- the view before, once. Not on a terminal (the status line ticks for
  -- the view running), nor with hooks (they run with the row written),
  -- nor with begin_ahead_ms = 0 (each run begun when it starts and
  -- finished before the next one begins, as before).
  -- SIGINT is held for the whole batch meanwhile, so that it never falls
  -- between a view's REFRESH and its finish: it cancels the statement
  -- running, or the next one.
  local overlap = piped ~= jopts and not p.tty and not require("matviews.hooks").any()
    and (piped.inline or mv.jobs.adapter() == "inline") and mv.config().begin_ahead_ms > 0
  local held = overlap and mv.core.recorder.hold()
  local function done(d, run)
    results[#results + 1] = run
    p:finish(M.result_text(op, d.name, run))
  end
  local tail
  local function finish_tail()
    local t = tail
    tail = nil
    if not t then return end
    done(t.d, as_run(op, t.d, pcall(t.fin)))
  end
  local function stop()
    finish_tail()
    if overlap then mv.core.recorder.release(held) end
  end
  for i, d in ipairs(defs) do
    -- a Ctrl-C or SIGTERM cancelled the running view (its run is recorded as
    -- failed): the batch stops there, the rest gets no run
    if sys.stop_signal() then
      stop()
      mv.jobs.flush()
      p:close(failures(results))
      io.stderr:write(("interrupted: %d not started\n"):format(#defs - i + 1))
      if ctx.options.json then output.json(results) end
      return 128 + sys.stop_signal()
    end
    p:start(d.name, d.id)
    if piped ~= jopts and i < #defs then piped.ahead = defs[i + 1].name end
    local o = i < #defs and piped or jopts
    if overlap then
      o.overlap = tail and finish_tail
      local ok, fin = pcall(mv.jobs.start_held, op, d.name, o)
      o.overlap = nil
      finish_tail() -- when the job did not (it ended before its service)
      if ok then tail = { fin = fin, d = d } else done(d, as_run(op, d, false, fin)) end
    else
      done(d, run_one(mv, op, d, o))
    end
  end
  stop()
  mv.jobs.flush()
  local failed = failures(results)
  p:close(failed)
  if sys.stop_signal() then return 128 + sys.stop_signal() end
  if ctx.options.json then
    -- in the one timestamp format; as recorded when the database is gone
    pcall(require("matviews.format").iso_fields, mv.conn(), results, { "started_at", "finished_at", "created_at" })
    pcall(require("matviews.format").iso_meta, mv.conn(), results)
    output.json(results)
  end
  return failed > 0 and 1 or 0
end

return M
