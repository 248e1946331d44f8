-- Benchmark (not a test): 1,000,000 refresh runs over 100 views, pruned with
-- keep_last = 500 (failures kept, the default), and the per-view statistics
-- aggregate timed before and after. Prints figures; asserts nothing.
--   ./matviews bench/prune.lua [ROWS] [VIEWS]     (sh bench/prune.sh runs it on a scratch cluster)
local mv = _G.mv or require "matviews"
local retention = require "matviews.retention"
local clock = mv.core.sys.monotonic_ms

local ROWS = tonumber(arg and arg[1]) or 1000000
local VIEWS = tonumber(arg and arg[2]) or 100
local KEEP = 500

-- Milliseconds fn takes.
local function time(fn)
  local t0 = clock()
  local r = fn()
  return clock() - t0, r
end

-- The statistics `matviews stats` shows, as one aggregate over the refresh
-- runs: per view count of successes and failures, avg/min/max/p95 duration of
-- the successes, and the latest run's status, rows_count and finish time.
local STATS = [[
SELECT d.name,
       count(*) FILTER (WHERE r.status = 2) AS successes,
       count(*) FILTER (WHERE r.status = 3) AS failures,
       avg(r.duration_ms) FILTER (WHERE r.status = 2)::int AS avg_ms,
       min(r.duration_ms) FILTER (WHERE r.status = 2) AS min_ms,
       max(r.duration_ms) FILTER (WHERE r.status = 2) AS max_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms) FILTER (WHERE r.status = 2) AS p95_ms,
       l.status AS last_status, l.rows_count AS last_rows, l.finished_at AS last_finished
FROM mat_view_definitions d
LEFT JOIN mat_view_refresh_runs r ON r.mat_view_definition_id = d.id AND r.created_at >= now() - $1::interval
LEFT JOIN LATERAL (SELECT status, rows_count, finished_at FROM mat_view_refresh_runs x
                   WHERE x.mat_view_definition_id = d.id ORDER BY created_at DESC LIMIT 1) l ON true
GROUP BY d.name, l.status, l.rows_count, l.finished_at
ORDER BY d.name]]

-- Median of 5 runs of the stats aggregate over `since`.
local function stats_ms(since)
  local t = {}
  for i = 1, 5 do t[i] = time(function() return mv.query(STATS, since) end) end
  table.sort(t)
  return t[3]
end

local function say(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

mv.init()
mv.exec("TRUNCATE mat_view_definitions, mat_view_create_runs, mat_view_refresh_runs, mat_view_delete_runs")
mv.exec("INSERT INTO mat_view_definitions (name, sql) SELECT format('bench_mv_%s', lpad(g::text, 3, '0')), 'SELECT 1' FROM generate_series(1, $1) g", VIEWS)
local ms = time(function()
  mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at,
              duration_ms, rows_count, created_at, updated_at)
    SELECT d.id, CASE WHEN (g / $2) % 20 = 0 THEN 3 ELSE 2 END, t, t + interval '1 second', ((g::bigint * 7919) % 5000)::int, g % 1000, t, t
    FROM (SELECT g, now() - (g::float8 / $1) * interval '60 days' AS t FROM generate_series(1, $1) g) s
    JOIN mat_view_definitions d ON d.name = format('bench_mv_%s', lpad((1 + g % $2)::text, 3, '0'))]], ROWS, VIEWS)
  mv.exec("VACUUM ANALYZE mat_view_refresh_runs")
end)
local n = mv.query("SELECT count(*) AS n FROM mat_view_refresh_runs")[1].n
say("rows: %d refresh runs over %d views (5%% failed, spread over 60 days), loaded in %.1f s", n, VIEWS, ms / 1000)

say("stats aggregate before prune: %.0f ms (since 7 days), %.0f ms (all history)", stats_ms("7 days"), stats_ms("100 years"))

local plan_ms, items = time(function() return retention.plan({ policy = { keep_last = KEEP } }) end)
local st = {}
local del_ms, deleted = time(function() return retention.delete(items, { stats = st }) end)
local left = mv.query("SELECT count(*) AS n FROM mat_view_refresh_runs")[1].n
say("prune keep_last = %d: %.1f s total (selecting %.1f s, deleting + VACUUM %.1f s); %d deleted, %d left",
  KEEP, (plan_ms + del_ms) / 1000, plan_ms / 1000, del_ms / 1000, deleted, left)
say("  %d DELETE statements of up to %d ids, the slowest %.0f ms", st.batches, retention.BATCH, st.slowest_ms)

say("stats aggregate after prune: %.0f ms (since 7 days), %.0f ms (all history)", stats_ms("7 days"), stats_ms("100 years"))
