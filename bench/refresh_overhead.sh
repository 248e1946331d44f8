#!/bin/sh
# Benchmark 1: the whole-process cost of `matviews refresh NAME --yes` (start,
# connect, look up the definition, record the run, refresh) against
# `psql -c 'REFRESH MATERIALIZED VIEW NAME'`, timed by hyperfine in
# interleaved rounds (one run of each per round, the order swapped every
# round, so load from other work falls on both alike): a small view over a
# 100,000-row table, and a 1,000,000-row view. Prints the ratio matviews /
# psql of the mean and median wall times (targets: at most 1.10 and 1.02).
# Both sides do the same work: matviews runs with `analyze = false` (its
# default ANALYZE after a refresh, which psql's REFRESH does not do, is
# timed on its own by bench/analyze.sh). The refresh goes through the
# strategy table (the built-in `regular`), as every refresh does.
# Usage: sh bench/refresh_overhead.sh [RUNS [BIG_RUNS]]  (rounds per view)
. bench/lib.sh
RUNS=${1:-30}
BIG_RUNS=${2:-$RUNS}
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

echo 'analyze = false' > "$BENCH_TMP/same_work.lua"
MV="$MATVIEWS --config $BENCH_TMP/same_work.lua"
q -c CHECKPOINT
interleaved "small view (100 rows over 100,000), matviews / psql" "$RUNS" 3 \
  "$MV refresh small_mv --yes" "psql -X -q -c 'REFRESH MATERIALIZED VIEW small_mv'"
q -c CHECKPOINT
interleaved "1,000,000-row view, matviews / psql" "$BIG_RUNS" 2 \
  "$MV refresh big_mv --yes" "psql -X -q -c 'REFRESH MATERIALIZED VIEW big_mv'"
echo "refresh runs recorded: $(q -At -c 'SELECT count(*) FROM mat_view_refresh_runs')"
echo "load: $(uptime | sed 's/.*load/load/')"
