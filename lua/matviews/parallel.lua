-- Dependency-aware parallel refresh: mv.refresh_all{ parallel = N, views =
-- {...}, upstream = bool, downstream = bool }. The coordinator walks the
-- dependency graph (matviews.deps) and keeps up to N child processes busy;
-- each child is this host running one recorded refresh job (M.child), on its
-- own connection. A view starts as soon as everything it reads that is part
-- of this run has been refreshed. When a refresh fails, every view
-- downstream of it is not run and gets a failed refresh run whose error
-- names the failed upstream; independent branches go on.
local M = {}

local STATUS_FAILED = 3

-- The definitions to refresh: opts.views (all when absent) with, on
-- request, everything they read (upstream) and everything that reads them
-- (downstream). Raises on an unknown name.
function M.select_views(g, opts)
  local mv = require "matviews"
  local deps = require "matviews.deps"
  if not opts.views or #opts.views == 0 then
    local all = {}
    for _, n in ipairs(g.names) do all[n] = true end
    return all
  end
  local set = {}
  for _, name in ipairs(opts.views) do
    if not g.nodes[name] then -- "schema.name" of a label that is plain, or the reverse
      local d = mv.definitions.find(name)
      name = d and d.label or name
    end
    if not g.nodes[name] then mv.error(("no definition named %q"):format(name)) end
    set[name] = true
    if opts.upstream then for n in pairs(deps.closure(g, name, "upstream")) do set[n] = true end end
    if opts.downstream then for n in pairs(deps.closure(g, name, "downstream")) do set[n] = true end end
  end
  return set
end

-- Records that `name` was not refreshed because `upstream` failed: a failed
-- refresh run, started and finished now.
local function record_skipped(conn, node, upstream)
  local mv = require "matviews"
  local msg = ("not refreshed: upstream %s failed"):format(upstream)
  conn:exec([[INSERT INTO mat_view_refresh_runs
      (mat_view_definition_id, status, started_at, finished_at, duration_ms, error, meta, hostname, process_pid)
    VALUES ($1, $2, now(), now(), 0, $3, $4, $5, $6)]],
    node.id, STATUS_FAILED, msg, { view = node.name, skipped = true, upstream_failed = upstream },
    mv.core.sys.hostname(), mv.core.sys.getpid())
  return msg
end

-- Starts the refresh of `name` in a child (matviews.child: it connects as
-- this process does, or to opts.dsn); returns its record.
local function start(name, opts, tmp)
  local mv = require "matviews"
  local rec = { name = name, out = tmp .. "." .. name .. ".out", err = tmp .. "." .. name .. ".err",
    started_ms = mv.core.sys.monotonic_ms() }
  local code = ("require('matviews.parallel').child(%q, %q)")
    :format(name, mv.json.encode({ row_count_strategy = opts.row_count_strategy }))
  rec.pid = require("matviews.child").spawn({ "-e", code }, { dsn = opts.dsn, stdout = rec.out, stderr = rec.err })
  return rec
end

-- Reads a finished child's outcome into rec (status, error, run_id, ...).
local function finish(rec, code)
  local mv = require "matviews"
  rec.finished_ms = mv.core.sys.monotonic_ms()
  rec.duration_ms = math.floor(rec.finished_ms - rec.started_ms + 0.5)
  local take = require("matviews.files").take
  local out, err = take(rec.out), take(rec.err)
  local ok, doc = pcall(mv.json.decode, out:match("[^\n]*\n?$") or "")
  if ok and type(doc) == "table" and doc.status then
    rec.status, rec.run_id, rec.rows_count = doc.status, doc.id, doc.rows_count
    rec.error = doc.error ~= mv.null and doc.error or nil
  else
    rec.status = "failed"
    local line = err:match("^[^\n]*") or ""
    rec.error = ("refresh process exited with code %d%s"):format(code, line ~= "" and (": " .. line) or "")
  end
  if code ~= 0 and rec.status == "success" then rec.status = "failed" end
  rec.out, rec.err, rec.pid = nil, nil, nil
end

-- Marks every not yet finished view downstream of `failed` as skipped.
local function skip_downstream(st, failed)
  local deps = require "matviews.deps"
  for _, n in ipairs(deps.order(st.g, deps.closure(st.g, failed, "downstream"))) do
    if st.set[n] and not st.done[n] then
      st.done[n] = true
      st.waiting[n] = nil
      local msg = record_skipped(st.conn, st.g.nodes[n], failed)
      local rec = { name = n, status = "skipped", error = msg, upstream_failed = failed }
      st.results[#st.results + 1] = rec
      st.emit("skipped", rec)
    end
  end
end

-- Handles a finished child: frees its downstream, or skips it on failure.
local function on_finished(st, rec)
  st.done[rec.name] = true
  st.results[#st.results + 1] = rec
  st.emit("done", rec)
  if rec.status ~= "success" then return skip_downstream(st, rec.name) end
  for down in pairs(st.g.nodes[rec.name].downstream) do
    if st.waiting[down] then
      st.waiting[down] = st.waiting[down] - 1
      if st.waiting[down] == 0 then st.ready[#st.ready + 1] = down end
    end
  end
end

-- Initial state: upstream counts within the set and the first ready views.
local function initial_state(g, set, conn, emit)
  local st = { g = g, set = set, conn = conn, emit = emit, waiting = {}, ready = {}, done = {},
    results = {}, running = {}, total = 0 }
  for _, n in ipairs(g.names) do
    if set[n] then
      local k = 0
      for up in pairs(g.nodes[n].upstream) do if set[up] then k = k + 1 end end
      st.waiting[n], st.total = k, st.total + 1
      if k == 0 then st.ready[#st.ready + 1] = n end
    end
  end
  return st
end

-- Refreshes the selected views in dependency order on up to opts.parallel
-- processes. opts.on_event(kind, rec, state) is called on "start", "done"
-- and "skipped". Returns { ok, status, total, succeeded, failed, skipped,
-- duration_ms, runs = { {name, status, error, run_id, duration_ms}... } }.
function M.refresh_all(opts)
  local mv = require "matviews"
  opts = opts or {}
  local n = math.tointeger(opts.parallel or 1)
  if not n or n < 1 then mv.error("parallel must be a whole number of at least 1") end
  local conn = opts.conn or mv.conn()
  local g = require("matviews.deps").load(conn)
  local set = M.select_views(g, opts)
  local t0 = mv.core.sys.monotonic_ms()
  local st
  local function emit(kind, rec) if opts.on_event then opts.on_event(kind, rec, st) end end
  st = initial_state(g, set, conn, emit)
  local tmp = os.tmpname()
  while #st.ready > 0 or next(st.running) do
    table.sort(st.ready, function(a, b) return a > b end)
    while #st.ready > 0 and #st.running < n do
      local rec = start(table.remove(st.ready), opts, tmp)
      st.running[#st.running + 1] = rec
      emit("start", rec)
    end
    local pids = {}
    for i, rec in ipairs(st.running) do pids[i] = rec.pid end
    local pid, code = mv.core.sys.wait_any(pids)
    for i, rec in ipairs(st.running) do
      if rec.pid == pid then
        table.remove(st.running, i)
        finish(rec, code)
        on_finished(st, rec)
        break
      end
    end
  end
  os.remove(tmp)
  return M.summary(st, mv.core.sys.monotonic_ms() - t0)
end

-- The result table of a run from its state.
function M.summary(st, elapsed)
  local count = { success = 0, failed = 0, skipped = 0 }
  for _, r in ipairs(st.results) do count[r.status] = (count[r.status] or 0) + 1 end
  local ok = count.failed == 0 and count.skipped == 0
  return { ok = ok, status = ok and "success" or "failed", total = st.total, succeeded = count.success,
    failed = count.failed, skipped = count.skipped, duration_ms = math.floor(elapsed + 0.5), runs = st.results }
end

-- The result line of one view, as `refresh` prints it without --parallel
-- (a view skipped for a failed upstream is failed, without a duration).
local function result_text(rec)
  local skipped = rec.status == "skipped"
  return require("matviews.operate").result_text("refresh", rec.name, { status = skipped and "failed" or rec.status,
    duration_ms = not skipped and rec.duration_ms or nil, rows_count = rec.rows_count, error = rec.error })
end

-- `matviews refresh NAME...|--id N|--all --parallel N [--upstream] [--downstream]`:
-- confirms, refreshes through refresh_all with progress on a terminal and
-- one line per view (or one JSON array), and returns the exit code.
function M.command(args, ctx, jopts)
  local mv = ctx.mv
  local output, targets = require "matviews.output", require "matviews.targets"
  local n = math.tointeger(tonumber(args.parallel or "1"))
  if not n or n < 1 then targets.usage("--parallel takes a whole number of at least 1") end
  local defs, views = targets.resolve(mv.conn(), args), nil
  if not args.all then views = {} for i, d in ipairs(defs) do views[i] = d.name end end
  local g = require("matviews.deps").load()
  local set = M.select_views(g, { views = views, upstream = args.upstream, downstream = args.downstream })
  local order = require("matviews.deps").order(g, set)
  local shown = require("matviews.operate").name_list(order)
  local what = ("refresh %d materialized view%s (parallel %d): %s"):format(#order, #order == 1 and "" or "s", n, shown)
  if not require("matviews.prompt").confirm(ctx, what) then
    if not require("matviews.prompt").must_refuse(ctx) then io.stderr:write("aborted\n") end
    return require("matviews.prompt").ABORTED
  end
  local p = require("matviews.progress").new({ total = #order, verb = "refreshing", quiet = ctx.options.json })
  local function running(st)
    local names = {}
    for i, r in ipairs(st.running) do names[i] = r.name end
    return table.concat(names, ", ")
  end
  local r = M.refresh_all({ parallel = n, views = views, upstream = args.upstream, downstream = args.downstream,
    row_count_strategy = jopts and jopts.row_count_strategy,
    on_event = function(kind, rec, st)
      if kind ~= "start" then p:finish(result_text(rec)) end
      if #st.running > 0 then p:start(running(st)) end
    end })
  p:close(r.failed + r.skipped)
  if ctx.options.json then
    local out = output.array()
    for i, rec in ipairs(r.runs) do
      out[i] = { view = rec.name, status = rec.status == "skipped" and "failed" or rec.status,
        skipped = rec.status == "skipped", run_id = rec.run_id, duration_ms = rec.duration_ms,
        rows_count = rec.rows_count, error = rec.error, upstream_failed = rec.upstream_failed }
    end
    output.json(out)
  end
  return r.ok and 0 or 1
end

-- The body of a child process: one recorded refresh job of `name`, inline;
-- prints the finalised run as one JSON line and exits 0 on success, else 1.
function M.child(name, opts_json)
  local mv = require "matviews"
  local opts = mv.json.decode(opts_json or "{}")
  opts.inline = true
  local ok, run = pcall(mv.refresh, name, opts)
  if not ok then run = { status = "failed", error = tostring(run) } end
  local out = { id = run.id, status = run.status, error = run.error, duration_ms = run.duration_ms,
    rows_count = run.rows_count }
  io.stdout:write(mv.json.encode(out), "\n")
  io.stdout:flush()
  os.exit(run.status == "success" and 0 or 1)
end

return M
