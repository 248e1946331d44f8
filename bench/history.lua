-- The long run history that bench/prune.lua and bench/report.lua measure:
-- VIEWS definitions bench_mv_001.. and ROWS refresh runs spread over the
-- last 60 days (5% failed, durations 0..5 s, rows_count 0..999), replacing
-- whatever the catalog held. Returns the milliseconds loading took.
--   local load = dofile("bench/history.lua"); load(mv, 1000000, 100)
return function(mv, rows, views)
  local t0 = mv.core.sys.monotonic_ms()
  mv.exec("TRUNCATE mat_view_definitions, mat_view_create_runs, mat_view_refresh_runs, mat_view_delete_runs CASCADE")
  mv.exec("INSERT INTO mat_view_definitions (name, sql) SELECT format('bench_mv_%s', lpad(g::text, 3, '0')), 'SELECT 1' FROM generate_series(1, $1) g", views)
  mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at,
              duration_ms, rows_count, error, created_at, updated_at)
    SELECT d.id, CASE WHEN (g / $2) % 20 = 0 THEN 3 ELSE 2 END, t, t + interval '1 second', ((g::bigint * 7919) % 5000)::int, g % 1000,
      CASE WHEN (g / $2) % 20 = 0 THEN 'canceling statement due to lock timeout' END, t, t
    FROM (SELECT g, now() - (g::float8 / $1) * interval '60 days' AS t FROM generate_series(1, $1) g) s
    JOIN mat_view_definitions d ON d.name = format('bench_mv_%s', lpad((1 + g % $2)::text, 3, '0'))]], rows, views)
  mv.exec("VACUUM ANALYZE mat_view_refresh_runs")
  return mv.core.sys.monotonic_ms() - t0
end
