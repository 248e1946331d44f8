-- Dependency-aware parallel refresh: mv.refresh_all{ parallel = N, views =
-- {...}, upstream = bool, downstream = bool }. The coordinator walks the
-- dependency graph (matviews.deps) and keeps up to N workers busy. A view
-- starts as soon as everything it reads that is part of this run has been
-- refreshed. When a refresh fails, every view downstream of it is not run
-- and gets a failed refresh run whose error names the failed upstream;
-- independent branches go on.
--
-- The workers are a fixed pool of long-lived host processes (M.serve),
-- started once per refresh_all and fed view names over a Unix socket;
-- each runs the same recorded refresh job as a sequential refresh
-- (matviews.jobs) on its two connections, opened once and reused, and
-- answers with the finalised run as one JSON line. Why a pool and not
-- asynchronous libpq in this process: the job path (definition, lock,
-- retries, timeouts, hooks, swap's transactions and plan) stays the one
-- synchronous path that sequential refresh and the worker use; services
-- would otherwise have to become state machines. No process starts and no
-- connection opens per view. A worker that cannot connect (max_connections)
-- is dropped, said once, and the rest go on; with none, the views run here,
-- one at a time.
--
-- Who runs the views. With up to two at once (--parallel 1 or 2, or two
-- views) the coordinator is one of the runners: it starts one worker at
-- most, runs ready views itself on its own connection (the one that read
-- the graph, already warm) and reads the worker's answers between them.
-- The worker is kept two views deep (the second waits in its socket), so
-- that it does not sit idle while the coordinator runs one; and its first
-- views are queued while it still connects, so both start at once. On 100
-- tiny views that saves against a pool of two: a process start, two
-- backends, and the round trip and the coordinator's wake-up for half of
-- the views (bench/many_views.sh, docs/benchmarks.md). Its price: while the
-- coordinator runs a view it hands out no other, and a view queued behind
-- a long one on the worker waits for it; both cost at most one view's time,
-- and a queue of one view per worker would leave the worker idle for one.
-- With three or more, the coordinator only coordinates and each worker
-- holds one view at a time: a newly ready view (a DAG's next layer) goes
-- to the first worker free, and a long view delays no other.
--
-- Signals: the workers lead process groups of their own, so a terminal's
-- Ctrl-C reaches the coordinator only. The first one is forwarded to the
-- busy workers (their running refreshes are cancelled and recorded as
-- failed), no other view is started (none gets a run), and the result says
-- how many were not started (interrupted = N); a second one exits at once.
local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

local STATUS_FAILED = require("matviews.vocab").STATUS_CODE.failed

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

-- Runs fn(conn) on the coordinator's connection; a lost connection is said
-- once on stderr, reconnected with backoff (up to 5 times) and fn run again.
local function with_conn(st, fn)
  local mv = require "matviews"
  local wait = 100
  for try = 1, 6 do
    local ok, r = pcall(fn, st.conn)
    if ok then
      if try > 1 then io.stderr:write("matviews: refresh coordinator reconnected\n") end
      return r
    end
    if try == 6 or (st.conn:is_open() and st.conn:is_connected()) then error(r, 0) end
    if try == 1 then
      io.stderr:write(("matviews: refresh coordinator lost its connection (%s); reconnecting\n")
        :format((error_message(r):gsub("\n.*", ""))))
    end
    mv.core.sys.sleep_ms(wait)
    wait = math.min(wait * 2, 2000)
    local cok, fresh = pcall(st.conn.clone, st.conn)
    if cok then
      if st.conn == mv.conn() then
        local dsn = mv.used_dsn -- what the workers connect with stays
        mv.use(fresh)
        mv.used_dsn = dsn
      end
      st.conn = fresh
    end
  end
end

-- Records a failed refresh run of node ({ id, name }) that never ran
-- (meta says why) on the coordinator's connection; says on stderr when
-- even that is impossible. Returns the run id, or nil.
local function record_failed(st, node, msg, meta)
  local ok, run = pcall(with_conn, st, function(conn)
    return require("matviews.jobs").record_failed(conn, "refresh", node, msg, meta)
  end)
  if ok then return run.id end
  io.stderr:write(("matviews: could not record that %s was not refreshed (%s)\n"):format(node.name,
    error_message(run)))
end

-- Records that `name` was not refreshed because `upstream` failed: a failed
-- refresh run, started and finished now.
local function record_skipped(st, node, upstream)
  local msg = ("not refreshed: upstream %s failed"):format(upstream)
  return msg, record_failed(st, node, msg, { skipped = true, upstream_failed = upstream })
end

-- Marks every not yet finished view downstream of `failed` as skipped.
local function skip_downstream(st, failed)
  local deps = require "matviews.deps"
  for _, n in ipairs(deps.order(st.g, deps.closure(st.g, failed, "downstream"))) do
    if st.set[n] and not st.done[n] then
      st.done[n] = true
      st.waiting[n] = nil
      local msg, run_id = record_skipped(st, st.g.nodes[n], failed)
      local rec = { name = n, status = "skipped", error = msg, upstream_failed = failed, run_id = run_id }
      st.results[#st.results + 1] = rec
      st.emit("skipped", rec)
    end
  end
end

-- Handles a finished child: frees its downstream, or skips it on failure.
-- A view that failed without a run row (its job raised, its worker died
-- before it began) gets one here.
local function on_finished(st, rec)
  if rec.status ~= "success" and not rec.run_id then
    rec.run_id = record_failed(st, st.g.nodes[rec.name], rec.error or "failed", { unrecorded = true })
  end
  st.done[rec.name] = true
  st.results[#st.results + 1] = rec
  st.emit("done", rec)
  if rec.status ~= "success" then return skip_downstream(st, rec.name) end
  for down in pairs(st.g.nodes[rec.name].downstream) do
    if st.waiting[down] then
      st.waiting[down] = st.waiting[down] - 1
      if st.waiting[down] == 0 then require("matviews.deps").insert_descending(st.ready, down) end
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
  -- sorted descending (the next one last), here once; a view that becomes
  -- ready is put at its place (deps.insert_descending)
  table.sort(st.ready, function(a, b) return a > b end)
  return st
end

-- The outcome of a job as the coordinator keeps it.
local function from_run(rec, run)
  local int = function(v) return type(v) == "number" and math.tointeger(v) or nil end
  rec.status, rec.run_id, rec.rows_count = run.status, int(run.id), int(run.rows_count)
  rec.duration_ms, rec.lock_wait_ms = int(run.duration_ms), int(run.lock_wait_ms)
  rec.error = run.error ~= require("matviews").null and run.error or nil
  rec.meta = M.answer_meta(run.meta)
  return rec
end

-- The options of refresh_all that reach each view's job: the coordinator
-- sends them on a worker's line, and job_options reads them back, so one
-- list says what a pool worker gets.
local FORWARDED = { "row_count_strategy", "args", "if_changed", "on_overlap" }

-- The job options of one view's refresh from a worker's line (or
-- refresh_all's opts): the same as a sequential refresh gets.
function M.job_options(o)
  -- defer_flush: the pool flushes each worker's last finish (matviews.jobs)
  local t = { inline = true, defer_flush = true }
  for _, k in ipairs(FORWARDED) do t[k] = o[k] end
  return t
end

-- What the coordinator needs of a run's meta: why it was skipped (skip
-- unchanged, or the overlap policy) and the run in progress; nil otherwise.
function M.answer_meta(meta)
  if type(meta) ~= "table" or not meta.skipped then return nil end
  return { skipped = meta.skipped, on_overlap = meta.on_overlap, running_run_id = meta.running_run_id,
    running_op = meta.running_op }
end

-- Writes one JSON document as a line on fd (a worker's socket, or stdout).
local function send(fd, doc)
  local mv = require "matviews"
  return mv.core.sys.fd_write(fd, mv.json.encode(doc) .. "\n")
end

-- The body of a pool worker (started by start_pool): connects (service
-- and recorder), says it is ready, then runs one recorded refresh per line
-- read on stdin ({ name, row_count_strategy }) and answers each with the
-- run on stdout, in order, until stdin ends. SIGINT is held for its whole
-- life: one cancels the statement running (or the next one), and the job
-- records the run as failed; the views queued behind it are then answered
-- { not_started = true } without a run.
-- go: a forked worker connects once the coordinator has its own
-- connection (a line "go" first on stdin; its end before that: the
-- coordinator gave up, and so does the worker), so that when the server
-- has few slots left the coordinator's connection is the one that gets one.
function M.serve(go)
  local mv = require "matviews"
  local sys, recorder = mv.core.sys, mv.core.recorder
  recorder.hold()
  mv.config()
  mv.core.slot_wait(0) -- a worker the server has no slot for says so and is dropped
  local buf, stopped = "", false
  while go and not buf:find("\n") do
    local data = sys.poll_read({ 0 })[0]
    if data == "" then os.exit(0) end
    buf = buf .. (data or "")
  end
  if go then buf = buf:gsub("^go\n", "") end
  -- the two connections are opened side by side
  local ok, err = pcall(function()
    mv.jobs.recorder_early(mv.conn(true))
    mv.jobs.recorder(mv.conn())
  end)
  send(1, { ready = ok, error = not ok and error_message(err) or nil })
  if not ok then os.exit(1) end
  local function answer(run)
    send(1, { id = run.id, status = run.status, error = run.error, duration_ms = run.duration_ms,
      rows_count = run.rows_count, lock_wait_ms = run.lock_wait_ms, meta = M.answer_meta(run.meta) })
  end
  -- A run whose finish was sent without waiting (a view queued behind it)
  -- is answered as the next view starts (on_started), without waiting for
  -- that finish's result: the coordinator frees the views downstream at
  -- once. Its run is kept in `unread` until the result is read (as the
  -- next finish is sent, or the last one written); a finish that could not
  -- be written turns the run failed, and the coordinator is told so
  -- ({ amend = run id }, see on_answer) before the worker's last answer.
  local held, unread = nil, {}
  local function amend(all)
    if all then pcall(recorder.settle, mv.jobs.recorder(mv.conn())) end
    local keep = {}
    for _, u in ipairs(unread) do
      if u.run.status ~= u.status then
        send(1, { amend = u.run.id, status = u.run.status, error = u.run.error })
      elseif u.run.finished_at == nil then
        keep[#keep + 1] = u
      end
    end
    unread = keep
  end
  local function answer_held()
    if not held then return end
    answer(held)
    unread[#unread + 1] = { run = held, status = held.status }
    held = nil
  end
  local early = buf -- what was read along with "go"
  buf = ""
  while true do
    local data
    if early ~= "" then data, early = early, "" else data = sys.poll_read({ 0 })[0] end
    if data == "" then break end
    buf = buf .. (data or "")
    local jobs = {}
    for line in buf:gmatch("([^\n]*)\n") do jobs[#jobs + 1] = mv.json.decode(line) end
    for i, job in ipairs(jobs) do
      if stopped or recorder.pending() or sys.stop_signal() then
        answer_held()
        stopped = true
        send(1, { not_started = true })
      else
        local jopts = M.job_options(job)
        -- the view queued behind this one is begun as this one refreshes
        jopts.ahead = jobs[i + 1] and jobs[i + 1].name
        jopts.pipeline_finish, jopts.on_started = jopts.ahead ~= nil, answer_held
        local jok, run = pcall(mv.jobs.run_held, "refresh", job.name, jopts)
        answer_held()
        if not jok then run = { status = "failed", error = error_message(run) } end
        stopped = recorder.pending(true) or sys.stop_signal() ~= nil
        if jok and jopts.pipeline_finish and not stopped then held = run; amend(false)
        else amend(true); answer(run) end
      end
    end
    answer_held()
    amend(true)
    buf = buf:match("[^\n]*$")
  end
  mv.jobs.flush() -- the last finish waits for its flush before the pool is done
  os.exit(0)
end

-- Starts one more pool worker { pid, fd, buf, ready = nil } into workers.
-- Workers start one after the other (the next once the last is connected),
-- so that when the server runs out of connections, the ones connected stay.
-- opts.fork: forked from this process (sys.fork_child: no exec, no
-- dynamic linking, no module loading; refused while this process has a
-- connection, and then spawned), keeping of the global options only those
-- a spawned worker is given; it connects once told to (go_pool).
local function start_worker(workers, opts)
  local mv, child = require "matviews", require "matviews.child"
  local pid, fd, forked
  if opts.fork then
    pid, fd = mv.core.sys.fork_child({ group = true, env = { [child.DSN_VAR] = opts.dsn },
      title = "matviews.parallel worker" })
    forked = pid ~= nil or nil
    if pid == 0 then
      for k in pairs(mv.options) do if k ~= "config" and k ~= "dsn" then mv.options[k] = nil end end
      local ok, err = pcall(M.serve, true) -- it ends the process
      if not ok then require("matviews.host").report(error_message(err)) end
      os.exit(1)
    end
  end
  if not pid then
    pid, fd = child.spawn({ "-e", "require('matviews.parallel').serve()" }, { dsn = opts.dsn, socket = true, group = true })
  end
  workers[#workers + 1] = { pid = pid, fd = fd, buf = "", recs = {}, forked = forked }
end

-- Tells the forked workers waiting for it to connect (serve's go).
local function go_pool(workers)
  local sys = require("matviews").core.sys
  for _, w in ipairs(workers) do
    if w.forked and w.fd then sys.fd_write(w.fd, "go\n") end
    w.forked = nil
  end
end

-- Reads what the workers wrote (waiting up to timeout_ms); calls
-- on_line(worker, doc) for each complete line, on_line(worker, nil) when a
-- worker's socket ended.
local function read_workers(workers, timeout_ms, on_line)
  local mv = require "matviews"
  local fds, by_fd = {}, {}
  for _, w in ipairs(workers) do
    if w.fd then fds[#fds + 1] = w.fd; by_fd[w.fd] = w end
  end
  if #fds == 0 then return end
  for fd, data in pairs(mv.core.sys.poll_read(fds, timeout_ms)) do
    local w = by_fd[fd]
    if data == "" then
      mv.core.sys.fd_close(fd)
      w.fd = nil
      on_line(w, nil)
    else
      w.buf = w.buf .. data
      for line in w.buf:gmatch("([^\n]*)\n") do
        local ok, doc = pcall(mv.json.decode, line)
        on_line(w, ok and type(doc) == "table" and doc or { status = "failed", error = "unreadable answer: " .. line })
      end
      w.buf = w.buf:match("[^\n]*$")
    end
  end
end

-- Closes the workers' sockets: each flushes its last finish and exits at
-- the end of its input.
local function close_pool(workers)
  local sys = require("matviews").core.sys
  for _, w in ipairs(workers) do
    if w.fd then sys.fd_close(w.fd); w.fd = nil end
  end
end

-- Closes the workers' sockets (close_pool) and reaps them.
local function stop_pool(workers)
  local sys = require("matviews").core.sys
  local pids = {}
  close_pool(workers)
  for _, w in ipairs(workers) do pids[#pids + 1] = w.pid end
  while #pids > 0 do
    local pid = sys.wait_any(pids, 10000)
    if not pid then for _, p in ipairs(pids) do sys.kill(p, 9) end
    else for i, p in ipairs(pids) do if p == pid then table.remove(pids, i) break end end end
  end
end

-- Marks rec as started now: it is one of the running views.
local function started(st, rec)
  rec.queued, rec.started_ms = nil, require("matviews").core.sys.monotonic_ms()
  st.emit("start", rec)
end

-- Removes rec from the views in flight.
local function landed(st, rec)
  for i, r in ipairs(st.running) do if r == rec then table.remove(st.running, i) break end end
end

-- A worker's word that a run it answered could not be finalised after
-- all (its finish, sent without waiting, failed for good): the view
-- counts as failed, with that error, as resync does for the views run here.
local function amend(st, doc)
  for _, rec in ipairs(st.results) do
    if rec.run_id == doc.amend then rec.status, rec.error = doc.status, doc.error end
  end
end

-- A worker's answer: its readiness, or the run of the first view of its
-- queue (nil: the worker ended, and every view it held failed). The next
-- view of its queue starts. The views queued on a worker that could not
-- connect go back to the ready ones.
local function on_answer(st, w, doc)
  if w.ready == nil then
    w.ready = doc ~= nil and doc.ready == true
    if not w.ready then
      st.refused = doc and doc.error or "the worker ended"
      for _, rec in ipairs(w.recs) do landed(st, rec); require("matviews.deps").insert_descending(st.ready, rec.name) end
      w.recs = {}
    elseif w.recs[1] then
      started(st, w.recs[1])
    end
    return
  end
  if doc and doc.amend then return amend(st, doc) end
  local rec = table.remove(w.recs, 1)
  if rec == nil then return end
  landed(st, rec)
  if doc and doc.not_started then -- stopped by SIGINT before it began: no run, no result
  else
    from_run(rec, doc or { status = "failed", error = "the refresh worker ended unexpectedly" })
    on_finished(st, rec)
  end
  if doc == nil and #w.recs > 0 then return on_answer(st, w, nil) end
  if w.recs[1] then started(st, w.recs[1]) end
end

-- Gives the next ready view to worker w: it starts at once when w is
-- connected and idle, else it waits in w's queue (the worker reads it when
-- it is ready and done with the views before it).
local function dispatch(st, w, opts)
  local rec = { name = table.remove(st.ready), queued = true }
  w.recs[#w.recs + 1] = rec
  st.running[#st.running + 1] = rec
  if w.ready and #w.recs == 1 then started(st, rec) end
  local line = { name = rec.name }
  for _, k in ipairs(FORWARDED) do line[k] = opts[k] end
  -- a worker still starting that cannot be written to has ended: what it
  -- wrote before (why it could not connect) is read with its end, and its
  -- queue goes back to the ready views then
  if not send(w.fd, line) and w.ready ~= nil then
    on_answer(st, w, nil)
  end
end

-- Runs the next ready view here, in the coordinator: the one it kept for
-- itself last time, else the next ready one. When more are ready than the
-- workers' queues took, it keeps the next for itself and begins its run
-- as this one refreshes (the job option ahead).
local function run_here(st, opts)
  local mv = require "matviews"
  local rec = { name = st.here_next or table.remove(st.ready) }
  st.here_next = #st.ready > 0 and table.remove(st.ready) or nil
  st.running[#st.running + 1] = rec
  started(st, rec)
  local jopts = M.job_options(opts)
  -- its finish is sent without waiting (read before the recorder's next
  -- statement; one that then cannot be written fails the run: resync)
  jopts.ahead, jopts.pipeline_finish = st.here_next, true
  local ok, run = pcall(mv.jobs.run_held, "refresh", rec.name, jopts)
  if not ok then run = { status = "failed", error = error_message(run) } end
  landed(st, rec)
  from_run(rec, run)
  st.here_runs[#st.here_runs + 1] = { rec, run }
  on_finished(st, rec)
end

-- Once every finish is read (mv.jobs.flush): a view run here whose
-- pipelined finish could not be written counts as failed, with that error.
local function resync(st)
  for _, pair in ipairs(st.here_runs) do
    local rec, run = pair[1], pair[2]
    if run.status ~= rec.status then rec.status, rec.error = run.status, run.error end
  end
end

-- Starts the next worker when the last one is connected and fewer than n
-- run; says once when the server refused one. Returns the usable workers
-- and whether one is still starting.
local function grow_pool(st, workers, n, opts)
  local usable, starting = 0, false
  for _, w in ipairs(workers) do
    if w.ready and w.fd then usable = usable + 1 end
    if w.ready == nil and w.fd then starting = true end
  end
  if not starting and not st.refused and #workers < n and not st.interrupted then
    start_worker(workers, opts)
    starting = true
  end
  if st.refused and not starting and not st.said then
    st.said = true
    io.stderr:write(("matviews: %d of %d refresh workers could connect (%s); %s\n"):format(usable, n,
      tostring(st.refused), usable > 0 and "going on with " .. usable or "refreshing here, one at a time"))
  end
  return usable, starting
end

-- The coordinator's loop: feeds ready views to idle workers until every
-- view is done, or until SIGINT (then waits for the busy ones). With
-- `here` (a pool of at most two), the coordinator is one of the runners:
-- it keeps each worker's queue DEPTH views long, then runs a ready view
-- itself, and reads the workers' answers between its own views; else it
-- only coordinates, one view per worker at a time (and runs views itself
-- only when no worker could connect).
local DEPTH, HERE_MAX = 2, 2
local function coordinate(st, workers, n, opts, here)
  local mv = require "matviews"
  local recorder = mv.core.recorder
  local depth = here and DEPTH or 1
  while #st.ready > 0 or #st.running > 0 or st.here_next do
    -- a signal held between statements, or one that cancelled a view run here
    if (recorder.pending(true) or mv.core.sys.stop_signal()) and not st.interrupted then
      st.interrupted = true
      for _, w in ipairs(workers) do if #w.recs > 0 then mv.core.sys.kill(w.pid, 2) end end
    end
    local usable, pending_start = grow_pool(st, workers, n, opts)
    if st.interrupted then st.ready, st.here_next = {}, nil end
    for _, w in ipairs(workers) do
      -- a worker still connecting gets its first views queued already
      while w.ready ~= false and w.fd and #w.recs < depth and #st.ready > 0 do dispatch(st, w, opts) end
    end
    if st.here_next or (#st.ready > 0 and (here or (usable == 0 and not pending_start and #st.running == 0))) then
      run_here(st, opts)
      read_workers(workers, 0, function(w, doc) on_answer(st, w, doc) end)
    else
      read_workers(workers, 1000, function(w, doc) on_answer(st, w, doc) end)
    end
  end
end

-- Refreshes the selected views in dependency order on up to opts.parallel
-- pool workers; each view's job gets opts.row_count_strategy, args,
-- if_changed and on_overlap, as a sequential refresh would. opts.graph:
-- the dependency graph, when the caller has read it already.
-- opts.workers: workers started already (M.start_worker), taken into the
-- pool (those it has no view for are stopped).
-- opts.on_event(kind, rec, state) is called on "start", "done" and "skipped". Returns { ok, status, total, succeeded, failed,
-- skipped, interrupted, duration_ms, runs = { {name, status, error, run_id,
-- duration_ms, rows_count, lock_wait_ms}... } }.
function M.refresh_all(opts)
  local mv = require "matviews"
  opts = opts or {}
  local n = math.tointeger(opts.parallel or 1)
  if not n or n < 1 then mv.error("parallel must be a whole number of at least 1") end
  local conn = opts.conn or mv.conn()
  local st = { conn = conn }
  local g = opts.graph or with_conn(st, function(c) return require("matviews.deps").load(c) end)
  local set = M.select_views(g, opts)
  local t0 = mv.core.sys.monotonic_ms()
  local function emit(kind, rec) if opts.on_event then opts.on_event(kind, rec, st) end end
  st = initial_state(g, set, st.conn, emit)
  st.here_runs = {}
  local recorder = mv.core.recorder
  mv.core.sys.clear_stop() -- a batch: the signals that count arrive from now on
  local held = recorder.hold()
  local workers = opts.workers or {}
  local runners = math.min(n, st.total)
  local here = runners <= HERE_MAX -- the coordinator is one of the runners
  -- workers started before the graph was read (M.command) that this run has no view for
  local extra = {}
  while #workers > math.max(here and runners - 1 or runners, 0) do extra[#extra + 1] = table.remove(workers) end
  stop_pool(extra)
  local ok, err = pcall(coordinate, st, workers, here and runners - 1 or runners, opts, here)
  close_pool(workers) -- each worker flushes its last finish before it exits,
  local fok, ferr = pcall(mv.jobs.flush) -- as the views run here do meanwhile
  stop_pool(workers)
  if not fok then error(ferr, 0) end
  resync(st)
  recorder.release(held)
  if not ok then error(err, 0) end
  local r = M.summary(st, mv.core.sys.monotonic_ms() - t0)
  if st.interrupted then r.interrupted, r.ok, r.status = st.total - #st.results, false, "failed" end
  return r
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
    duration_ms = not skipped and rec.duration_ms or nil, rows_count = rec.rows_count, error = rec.error,
    lock_wait_ms = rec.lock_wait_ms, meta = rec.meta })
end

-- `matviews refresh NAME...|--id N|--all --parallel N [--upstream] [--downstream]`:
-- confirms, refreshes through refresh_all with progress on a terminal and
-- one line per view (or one JSON array), and returns the exit code.
function M.command(args, ctx, jopts)
  local mv = ctx.mv
  local output, targets = require "matviews.output", require "matviews.targets"
  local n = math.tointeger(tonumber(args.parallel or "1"))
  if not n or n < 1 then targets.usage("--parallel takes a whole number of at least 1") end
  -- the graph is read once, here, and passed on (--all needs nothing else).
  -- Before that, when no question is to be asked, the first worker starts,
  -- forked before this process connects (given the connection string; the
  -- embedded server started, if it is the one); once this process has its
  -- connection, the worker opens its two (go_pool) while this one opens
  -- its recorder's, when views are to run here, and reads the catalog.
  local pool = {}
  if n >= 2 and require("matviews.prompt").answered(ctx) then
    start_worker(pool, { dsn = mv.used_dsn or mv.options.dsn or mv.default_dsn(), fork = true })
  end
  local gok, g, views, order = pcall(function()
    local c = mv.conn()
    go_pool(pool) -- once this process is connected
    if n <= HERE_MAX then mv.jobs.recorder_early(c) end
    local defs, names = targets.resolve(mv.conn(), args, { graph_only = true }), nil
    if not args.all then names = {} for i, d in ipairs(defs) do names[i] = d.name end end
    local graph = require("matviews.deps").load()
    local set = M.select_views(graph, { views = names, upstream = args.upstream, downstream = args.downstream })
    return graph, names, require("matviews.deps").order(graph, set)
  end)
  if not gok then stop_pool(pool); error(g, 0) end
  local shown = require("matviews.operate").name_list(order)
  local what = ("refresh %d materialized view%s (parallel %d): %s"):format(#order, #order == 1 and "" or "s", n, shown)
  if not require("matviews.prompt").confirm(ctx, what) then
    if not require("matviews.prompt").must_refuse(ctx) then io.stderr:write("aborted\n") end
    return require("matviews.prompt").ABORTED
  end
  local p = require("matviews.progress").new({ total = #order, verb = "refreshing", quiet = ctx.options.json })
  -- the running views, and when the last of them should end (from the
  -- command's start, by each one's recorded median; nil when one has none)
  local medians = {}
  local function running(st)
    local names, eta = {}, 0
    for _, r in ipairs(st.running) do
      if not r.queued then -- else it waits in a worker's queue
        names[#names + 1] = r.name
        if medians[r.name] == nil then
          medians[r.name] = require("matviews.progress").median_ms("refresh", st.g.nodes[r.name].id) or false
        end
        local m = medians[r.name]
        if eta and m then eta = math.max(eta, (r.started_ms or mv.core.sys.monotonic_ms()) - p.t0 + m) else eta = nil end
      end
    end
    return table.concat(names, ", "), eta
  end
  local r = M.refresh_all({ parallel = n, views = views, upstream = args.upstream, downstream = args.downstream, graph = g,
    workers = pool,
    row_count_strategy = jopts and jopts.row_count_strategy, args = jopts and jopts.args,
    if_changed = jopts and jopts.if_changed, on_overlap = jopts and jopts.on_overlap,
    on_event = function(kind, rec, st)
      if kind ~= "start" then p:finish(result_text(rec)) end
      -- the running views' medians are read only for a terminal's ticker
      if #st.running > 0 and p.tty then p:running(running(st)) end
    end })
  p:close(r.failed + r.skipped)
  if r.interrupted then io.stderr:write(("interrupted: %d not started\n"):format(r.interrupted)) end
  if ctx.options.json then
    local out = output.array()
    for i, rec in ipairs(r.runs) do
      out[i] = { view = rec.name, status = rec.status == "skipped" and "failed" or rec.status,
        skipped = rec.status == "skipped", run_id = rec.run_id, duration_ms = rec.duration_ms,
        rows_count = rec.rows_count, error = rec.error, upstream_failed = rec.upstream_failed, meta = rec.meta }
    end
    output.json(out)
  end
  if r.interrupted then return 130 end
  return r.ok and 0 or 1
end

return M
