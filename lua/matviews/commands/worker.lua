-- `matviews worker [--once] [--concurrency N] [--poll-ms MS]`: runs the jobs
-- of the queue (job_adapter = "queue"). It first reconciles orphaned runs.
-- --concurrency N runs N worker processes (this one and N-1 children) that
-- share the queue through FOR UPDATE SKIP LOCKED, as workers on other
-- machines do. --once stops when nothing is ready; otherwise it polls.
-- Exit 1 when a job failed, 0 otherwise.
local M = {
  name = "worker",
  summary = "Run queued jobs (job_adapter = \"queue\"), after reconciling orphaned runs.",
}

function M.configure(cmd)
  cmd:flag("--once", "Run the jobs that are ready, then exit.")
  cmd:option("--concurrency", "How many jobs run at once (worker processes).", "1")
  cmd:option("--poll-ms", "Pause between two looks at an empty queue.", "1000")
  cmd:flag("--schedule", "Also queue the refresh of each definition whose schedule_cron is due.")
  cmd:flag("--child"):hidden(true)
end

-- One line per finished job.
local function line(r)
  local s = ("job %d %s %s: %s"):format(r.job_id, r.op, tostring(r.view), r.status)
  if r.run_id then s = s .. (" (run %d, %d ms)"):format(r.run_id, r.duration_ms or 0) end
  if r.error then s = s .. ": " .. r.error end
  return s
end

-- Starts n-1 child workers (matviews.child); with --json each writes its
-- document to a socket this process reads (no file: nothing is left
-- behind whatever ends the processes), else its lines go to this
-- process's stdout. Each child stops when this process dies.
local function spawn(args, ctx, n)
  local kids = {}
  local env = { MATVIEWS_PARENT_PID = tostring(ctx.mv.core.sys.getpid()) }
  for i = 1, n - 1 do
    local argv = { "worker", "--child", "--poll-ms", tostring(args.poll_ms) }
    if args.once then argv[#argv + 1] = "--once" end
    if ctx.options.json then table.insert(argv, 1, "--json") end
    local kid = { out = {} }
    kid.pid, kid.fd = require("matviews.child").spawn(argv, { socket = ctx.options.json, env = env })
    kids[i] = kid
  end
  return kids
end

-- The exit code of a child the server had no connection slot for: it is
-- dropped, not counted as failed (EX_TEMPFAIL).
local NO_SLOT = 75

-- Notes that kid ended with code; says once when a child found no free
-- connection slot (the others go on).
local function ended(kid, code, state)
  kid.code = code
  if code == NO_SLOT and not state.said then
    state.said = true
    io.stderr:write("matviews: the server has no free connection slot for every worker process; going on with fewer\n")
  end
end

-- Reaps the children that ended already, without waiting.
local function watch(kids, state)
  local sys = require("matviews").core.sys
  for _, kid in ipairs(kids) do
    if kid.code == nil then
      local pid, code = sys.wait_any({ kid.pid }, 0)
      if pid then ended(kid, code, state) end
    end
  end
end

-- Reads the children's sockets until each ends (a child writes its
-- document when it exits, so reading goes along with waiting).
local function drain(kids)
  local sys = require("matviews").core.sys
  local fds, by_fd = {}, {}
  for _, kid in ipairs(kids) do
    if kid.fd then fds[#fds + 1] = kid.fd; by_fd[kid.fd] = kid end
  end
  while #fds > 0 do
    for fd, data in pairs(sys.poll_read(fds, 1000)) do
      local kid = by_fd[fd]
      kid.out[#kid.out + 1] = data
      if data == "" then
        sys.fd_close(fd)
        kid.fd = nil
        for i, f in ipairs(fds) do if f == fd then table.remove(fds, i) break end end
      end
    end
  end
end

-- Waits for the children; merges their documents; returns how many failed.
-- A SIGINT/SIGTERM that stopped this worker is passed on to them first: a
-- signal sent to the parent alone would leave them polling under init.
-- When this worker's loop ended on an error (broken), they get a SIGTERM.
local function reap(kids, doc, broken, state)
  local sys = require("matviews").core.sys
  local sig, bad = sys.stop_signal() or (broken and 15), 0
  if sig then for _, kid in ipairs(kids) do if kid.code == nil then sys.kill(kid.pid, sig) end end end
  drain(kids)
  for _, kid in ipairs(kids) do
    if kid.code == nil then ended(kid, select(2, sys.wait_any({ kid.pid })), state) end
    local code = kid.code
    if code ~= 0 and code ~= NO_SLOT and not (sig and code == 128 + sig) then bad = bad + 1 end
    local dok, kdoc = pcall(require("cjson").decode, table.concat(kid.out))
    for _, r in ipairs(dok and type(kdoc) == "table" and kdoc.processed or {}) do
      doc.processed[#doc.processed + 1] = r
    end
  end
  return bad
end

-- Prints what reconcile finalised (text mode).
local function report_reconcile(rec)
  for _, r in ipairs(rec.runs) do print(("reconciled %s run %d of %s: %s"):format(r.op, r.id, r.view, r.error)) end
  for _, j in ipairs(rec.jobs) do print(("reconciled job %d %s %s: %s"):format(j.job_id, j.op, j.view, j.error)) end
  for _, d in ipairs(rec.dropped) do print("dropped " .. d) end
  for _, s in ipairs(rec.skipped or {}) do print(("skipped %s: %s"):format(s.relation, s.error)) end
end

-- Claims and runs jobs until the queue is empty (--once), a SIGINT or
-- SIGTERM arrives, or forever; a lost connection is reopened.
local function loop(args, ctx, doc, kids, state)
  local queue = require "matviews.queue"
  local sys = ctx.mv.core.sys
  local failed = 0
  local tick = args.schedule and require("matviews.schedule").ticker(ctx, doc)
  while not sys.stop_signal() do
    watch(kids, state)
    -- a lost connection is reopened, then the jobs of its session failed
    local ok, r = require("matviews.reconnect").step(ctx.mv, "worker", function()
      if tick then tick() end
      return queue.work_one()
    end, queue.reconcile)
    if not ok then return failed
    elseif r then
      -- only a --json document lists them: a long-running worker keeps none
      if ctx.options.json then doc.processed[#doc.processed + 1] = r end
      if r.status ~= "success" then failed = failed + 1 end
      if not ctx.options.json then print(line(r)); io.stdout:flush() end
    elseif args.once then
      return failed
    else
      sys.sleep_ms(args.poll_ms)
    end
  end
  return failed
end

function M.run(args, ctx)
  local n, poll = math.tointeger(tonumber(args.concurrency)), math.tointeger(tonumber(args.poll_ms))
  if not n or n < 1 or not poll or poll < 0 then
    require("matviews.targets").usage("--concurrency and --poll-ms take a positive integer")
  end
  args.concurrency, args.poll_ms = n, poll
  local doc = { processed = {} }
  local parent = args.child and math.tointeger(tonumber(os.getenv("MATVIEWS_PARENT_PID") or ""))
  if parent then ctx.mv.core.sys.die_with_parent(parent) end
  if args.child then
    -- a child the server has no slots for (its connection and the
    -- recorder's) ends at once: its parent goes on with fewer and says so
    -- once (each child waiting and saying it would not); once connected,
    -- a lost connection waits for a slot again
    local cfg = ctx.mv.config()
    ctx.mv.core.slot_wait(0)
    local cok, err = pcall(function() ctx.mv.jobs.recorder(ctx.mv.conn()) end)
    if not cok and ctx.mv.core.slot_refused(ctx.mv.error_message(err)) then return NO_SLOT end
    if not cok then error(err, 0) end
    ctx.mv.core.slot_wait(cfg.connect_wait_ms)
  else
    doc.reconciled = ctx.mv.reconcile()
    if not ctx.options.json then report_reconcile(doc.reconciled) end
    -- the parent's own two connections are taken before any child starts:
    -- opened lazily at its first job, the recorder's would race the
    -- children for the server's last slots
    if n > 1 then ctx.mv.jobs.recorder(ctx.mv.conn()) end
  end
  local kids, state = spawn(args, ctx, n), {}
  local ok, failed = pcall(loop, args, ctx, doc, kids, state)
  local bad = reap(kids, doc, not ok, state)
  local sig = ctx.mv.core.sys.stop_signal()
  -- stopped by SIGINT/SIGTERM between two jobs: no error to report
  if not ok and sig and tostring(failed):match("interrupted!$") then return 128 + sig end
  if not ok then error(failed, 0) end
  if sig then return 128 + sig end
  if ctx.options.json then require("matviews.output").json(doc) end
  return (failed > 0 or bad > 0) and 1 or 0
end

return M
