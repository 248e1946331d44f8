#!/bin/sh
# Benchmark 1: the whole-process cost of `matviews refresh NAME --yes` (start,
# connect, look up the definition, record the run, refresh) against
# `psql -c 'REFRESH MATERIALIZED VIEW NAME'`, timed side by side by hyperfine
# in one run: a small view over a 100,000-row table, and a 1,000,000-row view.
# Prints the ratio matviews / psql of the mean wall times (targets: at most
# 1.10 and 1.02).  Usage: sh bench/refresh_overhead.sh [RUNS]
. bench/lib.sh
RUNS=${1:-30}
bench_start
machine
q <<'SQL'
CREATE TABLE small_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v FROM generate_series(1, 100000) g;
CREATE MATERIALIZED VIEW small_mv AS SELECT k, count(*) AS n, sum(v) AS total FROM small_src GROUP BY k;
CREATE UNIQUE INDEX ON small_mv (k);
CREATE TABLE big_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v FROM generate_series(1, 1000000) g;
CREATE MATERIALIZED VIEW big_mv AS SELECT id, k, v FROM big_src;
CREATE UNIQUE INDEX ON big_mv (id);
VACUUM ANALYZE;
SQL
define small_mv 'SELECT k, count(*) AS n, sum(v) AS total FROM small_src GROUP BY k' 0 k
define big_mv 'SELECT id, k, v FROM big_src' 0 id

hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$BENCH_TMP/small.json" \
  "$MATVIEWS refresh small_mv --yes" "psql -X -q -c 'REFRESH MATERIALIZED VIEW small_mv'"
hyperfine -N --warmup 2 --runs "$(( RUNS / 3 > 5 ? RUNS / 3 : 5 ))" --export-json "$BENCH_TMP/big.json" \
  "$MATVIEWS refresh big_mv --yes" "psql -X -q -c 'REFRESH MATERIALIZED VIEW big_mv'"
echo
ratio "$BENCH_TMP/small.json" "small view (100 rows over 100,000), matviews vs psql"
ratio "$BENCH_TMP/big.json" "1,000,000-row view, matviews vs psql"
echo "refresh runs recorded: $(q -At -c 'SELECT count(*) FROM mat_view_refresh_runs')"
