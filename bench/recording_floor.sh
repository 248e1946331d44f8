#!/bin/sh
# Benchmark of what recording runs costs `refresh --all --parallel 2` over
# the 100 tiny views of bench/many_views.sh (10 rows, a unique index each),
# every figure a ratio to the same REFRESHes split over two psql sessions
# run side by side (bench/lib.sh `interleaved`):
#   1. the refresh service alone, the views split over two host processes
#      as over the two psql: no run row (bench/recording_floor.lua none);
#   2. the same with the least a run row can cost: inserted as the view
#      starts, updated when it ends, on a second connection of each
#      process, in a table with its primary key only (... minimal);
#   3. the same rows written with one statement per view (the previous
#      view's update and this view's insert together: ... one);
#   4. `refresh --all --parallel 2` itself.
# The difference of 1 and 3 is the floor of recording a run per view on
# this machine, whatever the recorder does; that of 3 and 4 what matviews's
# run rows cost above it (the definition read and the lock in the same
# statement, the foreign key, the report indexes, the counters trigger).
# Usage: sh bench/recording_floor.sh [ROUNDS]   (default 11)
. bench/lib.sh
ROUNDS=${1:-11}
bench_start
machine

make_db tiny 100 tiny
q -d tiny -c "CREATE TABLE bench_runs (id bigserial PRIMARY KEY, defn bigint, status int, started_at timestamptz,
  finished_at timestamptz, duration_ms int, meta jsonb)"
psql_refreshes tiny 100
for mode in none minimal one; do
  cat >"$BENCH_TMP/two_$mode.sh" <<EOS
PGDATABASE=tiny $MATVIEWS bench/recording_floor.lua $mode 0 & PGDATABASE=tiny $MATVIEWS bench/recording_floor.lua $mode 1; wait
EOS
done
settle 5 tiny "sh $BENCH_TMP/two_psql.sh" "sh $BENCH_TMP/two_none.sh" "sh $BENCH_TMP/two_minimal.sh" \
  "sh $BENCH_TMP/two_one.sh" "env PGDATABASE=tiny $MATVIEWS refresh --all --parallel 2 --yes"

echo
interleaved "service alone, two processes / two psql sessions" "$ROUNDS" 2 \
  "sh $BENCH_TMP/two_none.sh" "sh $BENCH_TMP/two_psql.sh"
interleaved "service + minimal run row, two processes / two psql sessions" "$ROUNDS" 2 \
  "sh $BENCH_TMP/two_minimal.sh" "sh $BENCH_TMP/two_psql.sh"
interleaved "service + minimal run row, one statement per view / two psql sessions" "$ROUNDS" 2 \
  "sh $BENCH_TMP/two_one.sh" "sh $BENCH_TMP/two_psql.sh"
interleaved "refresh --all --parallel 2 / two psql sessions (target <= 1.2)" "$ROUNDS" 2 \
  "env PGDATABASE=tiny $MATVIEWS refresh --all --parallel 2 --yes" "sh $BENCH_TMP/two_psql.sh"
echo "load: $(cat /proc/loadavg)"
