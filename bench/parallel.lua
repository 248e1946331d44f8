-- Benchmark of dependency-aware parallel refresh: 60 materialized views in
-- 6 layers of 10; each view of a layer reads two of the layer before and
-- sleeps 200 ms on the server while it is refreshed. Refreshes everything
-- with mv.refresh_all at --parallel 1 and 4 (and any others given) and
-- prints, side by side, wall time, total work and critical path (both from
-- the recorded runs' durations) and the ratios the design asks for.
-- Prints figures; asserts nothing.
--   MATVIEWS_HOME=/tmp/mvbench ./matviews run bench/parallel.lua [N...]
local mv = require "matviews"
local clock = mv.core.sys.monotonic_ms

local LAYERS, WIDTH, SLEEP = 6, 10, 0.2
local levels = {}
for _, a in ipairs(arg or {}) do levels[#levels + 1] = math.tointeger(tonumber(a)) end
if #levels == 0 then levels = { 1, 4 } end

local admin = mv.connect((mv.default_dsn()))
admin:exec("DROP DATABASE IF EXISTS matviews_bench_parallel WITH (FORCE)")
admin:exec("CREATE DATABASE matviews_bench_parallel")
admin:close()
mv.use((mv.default_dsn()) .. " dbname=matviews_bench_parallel")
mv.init()

local function name(layer, i) return ("b%d_%02d"):format(layer, i) end

-- Layer 1 reads nothing; view i of layer k reads views i and i+1 of k-1.
-- Created WITH NO DATA: a reader fails until what it reads is refreshed.
for layer = 1, LAYERS do
  for i = 0, WIDTH - 1 do
    local from = layer == 1 and "" or (", %s, %s"):format(name(layer - 1, i), name(layer - 1, (i + 1) % WIDTH))
    local sql = ("SELECT 1 AS n FROM pg_sleep(%s)%s"):format(SLEEP, from)
    mv.exec(("CREATE MATERIALIZED VIEW %s AS %s WITH NO DATA"):format(name(layer, i), sql))
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ($1, $2)", name(layer, i), sql)
  end
end

-- Total work and critical path (ms) from the runs recorded after `mark`.
local function measure(mark)
  local dur = {}
  for _, r in ipairs(mv.query([[SELECT d.name, extract(epoch FROM r.finished_at - r.started_at) * 1000 AS duration_ms
      FROM mat_view_refresh_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE r.id > $1]], mark)) do
    dur[r.name] = r.duration_ms
  end
  local total, finish, critical = 0, {}, 0
  for layer = 1, LAYERS do
    for i = 0, WIDTH - 1 do
      local n, start = name(layer, i), 0
      if layer > 1 then start = math.max(finish[name(layer - 1, i)], finish[name(layer - 1, (i + 1) % WIDTH)]) end
      finish[n] = start + (dur[n] or 0)
      total = total + (dur[n] or 0)
      if finish[n] > critical then critical = finish[n] end
    end
  end
  return total, critical
end

local rows = {}
for _, n in ipairs(levels) do
  local mark = mv.query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
  local t0 = clock()
  local r = mv.refresh_all({ parallel = n })
  local wall = clock() - t0
  local total, critical = measure(mark)
  rows[#rows + 1] = { n = n, wall = wall, total = total, critical = critical, ok = r.ok,
    bound = 1.15 * math.max(critical, total / 2) }
end

print(("%d views in %d layers, %d ms of server time each; machine: %s, %s cores"):format(
  LAYERS * WIDTH, LAYERS, SLEEP * 1000, mv.core.sys.hostname(), io.popen("nproc"):read("l")))
print(("%-10s %10s %12s %15s %22s %8s"):format("parallel", "wall ms", "work ms", "critical ms",
  "1.15 x max(cp, work/2)", "all ok"))
for _, r in ipairs(rows) do
  print(("%-10d %10.0f %12.0f %15.0f %22.0f %8s"):format(r.n, r.wall, r.total, r.critical, r.bound, tostring(r.ok)))
end
local by = {}
for _, r in ipairs(rows) do by[r.n] = r end
if by[1] and by[4] then
  print(("speed-up of --parallel 4 over --parallel 1: %.2f x (target >= 1.8)"):format(by[1].wall / by[4].wall))
  print(("--parallel 4 wall / bound: %.2f (target <= 1.00)"):format(by[4].wall / by[4].bound))
end
