#!/bin/sh
# The cost of the ANALYZE that create and refresh run on a view by default
# (analyze = true): `matviews refresh big_mv --yes` of a 1,000,000-row view
# with the default configuration against `analyze = false`, timed by
# hyperfine in interleaved rounds (bench/lib.sh); then the ANALYZE times the
# runs recorded (meta.response.analyze_ms) and the estimated row counts.
# Usage: sh bench/analyze.sh [ROUNDS]
. bench/lib.sh
ROUNDS=${1:-10}
bench_start
machine
q <<'SQL'
CREATE TABLE big_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v, md5(g::text) AS t FROM generate_series(1, 1000000) g;
CREATE MATERIALIZED VIEW big_mv AS SELECT id, k, v, t FROM big_src;
CREATE UNIQUE INDEX ON big_mv (id);
VACUUM ANALYZE;
SQL
"$MATVIEWS" -e 'mv.definitions.save({ name = "big_mv", sql = "SELECT id, k, v, t FROM big_src", unique_index_columns = { "id" } })'
echo 'analyze = true' > "$BENCH_TMP/on.lua"
echo 'analyze = false' > "$BENCH_TMP/off.lua"
q -c CHECKPOINT
interleaved "refresh of a 1,000,000-row view, ANALYZE / no ANALYZE" "$ROUNDS" 1 \
  "$MATVIEWS --config $BENCH_TMP/on.lua refresh big_mv --yes" "$MATVIEWS --config $BENCH_TMP/off.lua refresh big_mv --yes"
q -At -F ' ' <<'SQL' | while read -r n med mn mx; do
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY (meta->'response'->>'analyze_ms')::int),
       min((meta->'response'->>'analyze_ms')::int), max((meta->'response'->>'analyze_ms')::int)
  FROM mat_view_refresh_runs WHERE meta->'response' ? 'analyze_ms';
SQL
  echo "ANALYZE inside the refreshes: $n runs, median $med ms (min $mn, max $mx)"
done
echo "estimated rows_count of the last refresh with ANALYZE: $(q -At -c "SELECT rows_count FROM mat_view_refresh_runs WHERE meta->'response' ? 'analyze_ms' ORDER BY id DESC LIMIT 1")"
echo "load: $(uptime | sed 's/.*load/load/')"
