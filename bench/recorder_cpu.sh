#!/bin/sh
# Benchmark of the server CPU that recording a run costs: the recorder
# backend's (the connection that runs each run's begin and finish
# statements, src/recorder.c), per run, read from /proc/PID/schedstat
# around batches of 100 recorded refreshes run as `refresh --all` runs
# them (bench/recorder_cpu.lua), over 100 tiny views (10 rows, a unique
# index each: bench/lib.sh make_db) in a catalog of 100 definitions, and
# of 1,000 (900 more that are not refreshed). The service backend's CPU
# per run (REFRESH, ANALYZE, row counts) is printed beside it.
# With BEFORE, the path of another build's matviews (e.g. of the commit
# before a change, built in a copy of that commit), both builds are
# measured, each on databases it initialised itself, one batch of each per
# round, the order swapped every round; the ratio after/before of the
# medians is printed.
# Usage: sh bench/recorder_cpu.sh [ROUNDS [BEFORE]]   (default 7 rounds)
. bench/lib.sh
ROUNDS=${1:-7}
BEFORE=${2:-}
bench_start
machine

builds=after
[ -n "$BEFORE" ] && builds="before after"
bin() { if [ "$1" = before ]; then echo "$BEFORE"; else echo "$MATVIEWS"; fi; }
for b in $builds; do
  (MATVIEWS=$(bin "$b"); make_db "${b}_100" 100 tiny; make_db "${b}_1000" 100 tiny)
  q -d "${b}_1000" -c "INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns)
    SELECT 'x_' || i, 'SELECT id FROM src', 0, '[\"id\"]' FROM generate_series(101, 1000) i" -c "ANALYZE"
done
views=$(seq -f 'v_%g' 1 100)

r=1
while [ "$r" -le "$ROUNDS" ]; do
  order=$builds
  [ $(( r % 2 )) = 0 ] && [ -n "$BEFORE" ] && order="after before"
  for size in 100 1000; do
    for b in $order; do
      # shellcheck disable=SC2086
      PGDATABASE="${b}_$size" "$(bin "$b")" bench/recorder_cpu.lua 1 $views >>"$BENCH_TMP/$b.$size"
    done
  done
  r=$(( r + 1 ))
done

# median of column $2 of file $1
median() { awk -v c="$2" '{ print $c }' "$1" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "server CPU per recorded refresh, ms, median of $ROUNDS batches of 100 (recorder: begin + finish; service: REFRESH etc.)"
for size in 100 1000; do
  for b in $builds; do
    printf '  catalog of %4d definitions, %-6s recorder %.3f  service %.3f\n' "$size" "$b" \
      "$(median "$BENCH_TMP/$b.$size" 1)" "$(median "$BENCH_TMP/$b.$size" 2)"
  done
  if [ -n "$BEFORE" ]; then
    printf '  catalog of %4d definitions, recorder after/before %.2f\n' "$size" \
      "$(echo "$(median "$BENCH_TMP/after.$size" 1) $(median "$BENCH_TMP/before.$size" 1)" | awk '{ print $1 / $2 }')"
  fi
done
echo "load: $(uptime | sed 's/.*load/load/')"
