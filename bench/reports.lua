-- Benchmark of the reports on a large run history: fills the run tables of
-- a scratch database with N runs (default 1,000,000 refresh runs over 20
-- views, plus 1% create and delete runs) and prints how long mv.runs,
-- mv.stats, list and metrics take. Prints figures; asserts nothing.
--   MATVIEWS_HOME=/tmp/mvbench ./matviews run bench/reports.lua [N]
local mv = require "matviews"
local reports = require "matviews.reports"
local clock = mv.core.sys.monotonic_ms

local n = math.tointeger(tonumber(arg and arg[1] or "")) or 1000000
local views = 20

local admin = mv.connect((mv.default_dsn()))
admin:exec("DROP DATABASE IF EXISTS matviews_bench WITH (FORCE)")
admin:exec("CREATE DATABASE matviews_bench")
admin:close()
mv.use((mv.default_dsn()) .. " dbname=matviews_bench")
mv.init()

local t0 = clock()
mv.exec([[INSERT INTO mat_view_definitions (name, sql)
  SELECT 'mv_' || g, 'SELECT ' || g FROM generate_series(1, $1) g]], views)
mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at,
    duration_ms, rows_count, created_at)
  SELECT 1 + g % $2, CASE WHEN g % 50 = 0 THEN 3 ELSE 2 END,
    now() - make_interval(secs => ($1 - g) * 30), now() - make_interval(secs => ($1 - g) * 30 - 1),
    100 + (g::bigint * 7919) % 900, g % 1000, now() - make_interval(secs => ($1 - g) * 30)
  FROM generate_series(1, $1) g]], n, views)
for _, t in ipairs({ "mat_view_create_runs", "mat_view_delete_runs" }) do
  mv.exec(([[INSERT INTO %s (mat_view_definition_id, status, duration_ms, created_at)
    SELECT 1 + g %% $2, 2, 50, now() - make_interval(secs => g * 3000) FROM generate_series(1, $1 / 100) g]]):format(t),
    n, views)
end
mv.exec("ANALYZE")
print(("filled %d refresh runs over %d views in %.0f ms"):format(n, views, clock() - t0))

-- Runs fn a few times and prints the best time.
local function bench(label, fn)
  local best = math.huge
  for _ = 1, 3 do
    local t = clock()
    fn()
    best = math.min(best, clock() - t)
  end
  print(("%-36s %8.1f ms"):format(label, best))
end

bench("runs{} (newest 50)", function() mv.runs({}) end)
bench("runs{ view, limit = 20 }", function() mv.runs({ view = "mv_7", limit = 20 }) end)
bench("runs{ status = 'failed' }", function() mv.runs({ status = "failed" }) end)
bench("runs{ status = 'orphaned' }", function() mv.runs({ status = "orphaned" }) end)
bench("stats{ view, since = '24h' }", function() mv.stats({ view = "mv_7", since = "24h" }) end)
bench("stats{ since = '7d' }", function() mv.stats({ since = "7d" }) end)
bench("stats{ view } (all history)", function() mv.stats({ view = "mv_7" }) end)
bench("stats{} (all history, all views)", function() mv.stats({}) end)
bench("list", function() reports.list() end)
bench("metrics", function() reports.metrics_data() end)
