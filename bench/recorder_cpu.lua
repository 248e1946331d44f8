-- Benchmark (not a test): the server CPU that recording a run costs. Runs
-- one warm-up batch, then BATCHES batches of recorded refreshes of the
-- views VIEW... as `refresh --all` runs them (each finish but the last
-- pipelined, the WAL flush deferred to the batch's end: mv.jobs.flush),
-- and reads around each batch the CPU time (/proc/PID/schedstat) of the
-- two backends: the recorder's (each run's begin and finish) and the
-- service's (the REFRESH and what goes with it). Prints one line per
-- batch: "RECORDER_MS SERVICE_MS", server CPU per run in milliseconds.
-- The server must run on this machine (bench/recorder_cpu.sh).
--   ./matviews bench/recorder_cpu.lua BATCHES VIEW...
local mv = _G.mv or require "matviews"

local BATCHES = tonumber(arg and arg[1]) or 1
local views = {}
for i = 2, #(arg or {}) do views[#views + 1] = arg[i] end
assert(#views > 0, "usage: matviews bench/recorder_cpu.lua BATCHES VIEW...")

-- CPU time a backend of this machine has used so far, in ms.
local function cpu_ms(pid)
  local f = assert(io.open("/proc/" .. pid .. "/schedstat"), "no backend " .. pid .. " on this machine")
  local ns = f:read("n")
  f:close()
  return ns / 1e6
end

local function pid_of(conn) return conn:query("SELECT pg_backend_pid() AS pid")[1].pid end

local conn = mv.conn()
local rec_pid, svc_pid = pid_of(mv.jobs.recorder(conn)), pid_of(conn)

-- One batch; returns the recorder's and the service's CPU per run (ms).
local function batch()
  local r0, s0 = cpu_ms(rec_pid), cpu_ms(svc_pid)
  for i, name in ipairs(views) do
    local run = mv.jobs.refresh(name, { defer_flush = true, pipeline_finish = i < #views or nil })
    assert(run.status == "success", name .. ": " .. tostring(run.error))
  end
  mv.jobs.flush()
  return (cpu_ms(rec_pid) - r0) / #views, (cpu_ms(svc_pid) - s0) / #views
end

batch() -- warm-up: caches, prepared statements and their generic plans
for _ = 1, BATCHES do print(("%.4f %.4f"):format(batch())) end
