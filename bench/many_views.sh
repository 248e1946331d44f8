#!/bin/sh
# Benchmark of the run path (issue 12) over many small views, every figure
# a ratio of two commands timed side by side (bench/lib.sh `interleaved`:
# one run of each per round, the order swapped every round):
#   1. `refresh --all` over 100 tiny views (10 rows, a unique index each)
#      against `psql -f` of the same 100 REFRESH statements   (target <= 1.3)
#   2. `refresh --all --parallel 2` over them against the same REFRESHes
#      split over two psql sessions run side by side, the server's floor
#      on this machine                                          (target <= 1.2)
#   3. 100 views that wait 20 ms on the server each: `--parallel 4`
#      against `refresh --all`                                  (target <= 0.35)
#   4. the same over 1,000 such views                           (target <= 0.35)
# then the statements one recorded refresh sends (log_statement = all, for
# one host's sessions only, counted between two marker statements; target
# <= 8) and the peak RSS of `refresh --all --parallel 4` over the 1,000
# views (from /usr/bin/time -v; target < 20 MB).
# Usage: sh bench/many_views.sh [ROUNDS [ROUNDS_1000]]   (defaults 5 and 3)
. bench/lib.sh
ROUNDS=${1:-5}
ROUNDS_BIG=${2:-3}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: run make bench-deps" >&2; exit 2; }
bench_start
machine

make_db tiny 100 tiny
make_db sleep100 100 sleep
make_db sleep1000 1000 sleep

psql_refreshes tiny 100
settle 3 "tiny sleep100 sleep1000" "psql -X -q -d tiny -f $BENCH_TMP/all.sql" "sh $BENCH_TMP/two_psql.sh" \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --parallel 2 --yes"

echo
interleaved "100 tiny views: refresh --all / psql -f (target <= 1.3)" "$ROUNDS" 2 \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --yes" "psql -X -q -d tiny -f $BENCH_TMP/all.sql"
interleaved "100 tiny views: refresh --all --parallel 2 / two psql sessions side by side (target <= 1.2)" "$ROUNDS" 2 \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --parallel 2 --yes" "sh $BENCH_TMP/two_psql.sh"
# Not targets, the breakdown: the same two ratios without the ANALYZE that
# refresh runs by default (configuration analyze = false), and the WAL
# flushes (pg_stat_wal.wal_sync, counted by the server) of one run of each.
printf 'analyze = false\n' >"$BENCH_TMP/noanalyze.lua"
interleaved "100 tiny views, analyze = false: refresh --all / psql -f" "$ROUNDS" 1 \
  "env PGDATABASE=tiny $MATVIEWS --config $BENCH_TMP/noanalyze.lua refresh --all --yes" "psql -X -q -d tiny -f $BENCH_TMP/all.sql"
interleaved "100 tiny views, analyze = false: refresh --all --parallel 2 / two psql sessions" "$ROUNDS" 1 \
  "env PGDATABASE=tiny $MATVIEWS --config $BENCH_TMP/noanalyze.lua refresh --all --parallel 2 --yes" "sh $BENCH_TMP/two_psql.sh"
# Two more breakdown lines for the first ratio: without the run counters'
# trigger (schema steps 8 and 13; its share of each finish), and with fsync
# off for the whole cluster (what is left is CPU and round trips: the part
# of the gap that a quiet machine, whose fsyncs are fast, shows in full).
q -d tiny -c "ALTER TABLE mat_view_refresh_runs DISABLE TRIGGER matviews_count_run"
interleaved "100 tiny views, counters trigger disabled: refresh --all / psql -f" "$ROUNDS" 1 \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --yes" "psql -X -q -d tiny -f $BENCH_TMP/all.sql"
q -d tiny -c "ALTER TABLE mat_view_refresh_runs ENABLE TRIGGER matviews_count_run"
q -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
interleaved "100 tiny views, fsync off: refresh --all / psql -f" "$ROUNDS" 1 \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --yes" "psql -X -q -d tiny -f $BENCH_TMP/all.sql"
q -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
syncs() { q -At -d tiny -c "SELECT wal_sync FROM pg_stat_wal"; }
s0=$(syncs); PGDATABASE=tiny "$MATVIEWS" refresh --all --yes >/dev/null; s1=$(syncs)
psql -X -q -d tiny -f "$BENCH_TMP/all.sql"; s2=$(syncs)
PGDATABASE=tiny "$MATVIEWS" refresh --all --parallel 2 --yes >/dev/null; s3=$(syncs)
echo "WAL flushes for the 100 tiny views: refresh --all $((s1 - s0)), psql -f $((s2 - s1)), --parallel 2 $((s3 - s2))"

interleaved "100 views waiting 20 ms: --parallel 4 / refresh --all (target <= 0.35)" "$ROUNDS" 1 \
  "env PGDATABASE=sleep100 $MATVIEWS refresh --all --parallel 4 --yes" "env PGDATABASE=sleep100 $MATVIEWS refresh --all --yes"
interleaved "1,000 views waiting 20 ms: --parallel 4 / refresh --all (target <= 0.35)" "$ROUNDS_BIG" 0 \
  "env PGDATABASE=sleep1000 $MATVIEWS refresh --all --parallel 4 --yes" "env PGDATABASE=sleep1000 $MATVIEWS refresh --all --yes"

# Statements of one recorded refresh: a first run opens the connections;
# the second is counted between markers sent on a third connection (as
# `refresh --all` runs them back to back), the third after a statement of
# the caller's on its connection (its lock_timeout and statement_timeout
# are then set for the job and put back afterwards).
tag=mark$$
PGDATABASE=tiny PGOPTIONS="-c log_statement=all" "$MATVIEWS" -e "
  local marks = mv.connect('')
  assert(mv.refresh('v_1').status == 'success')
  marks:query(\"SELECT 'a_$tag'\")
  assert(mv.refresh('v_2').status == 'success')
  marks:query(\"SELECT 'b_$tag'\")
  mv.query('SELECT 1')
  marks:query(\"SELECT 'c_$tag'\")
  assert(mv.refresh('v_3').status == 'success')
  mv.query('SELECT 1')
  marks:query(\"SELECT 'd_$tag'\")"
sleep 1
count() { awk -v a="$1" -v b="$2" 'index($0, a) { on = 1; next } index($0, b) { exit } on && /LOG:  (statement|execute)/ { n++ } END { print n + 0 }' "$BENCH_TMP/server.log"; }
echo "statements per recorded refresh: $(count "a_$tag" "b_$tag") back to back (target <= 8);" \
  "$(( $(count "c_$tag" "d_$tag") - 1 )) after a statement of the caller's (its timeouts set and put back)"

echo "refresh --all --parallel 4 over 1,000 views: $(/usr/bin/time -v env PGDATABASE=sleep1000 "$MATVIEWS" refresh --all --parallel 4 --yes 2>&1 >/dev/null \
  | awk -F': ' '/Maximum resident set size/ { printf "%.1f MB peak RSS (target < 20 MB)", $2 / 1024 }')"
echo "load: $(uptime | sed 's/.*load/load/')"
