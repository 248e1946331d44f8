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
# Then, when valgrind is installed, a figure that the machine's load does
# not move: the instructions a begin + finish pair costs the server. The
# last run's two statements, as the server log shows them (log_statement =
# all), are replayed 40 and 200 times in a single-user backend under
# callgrind (bench/recorder_replay.lua); the difference / 160 is printed.
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

command -v valgrind >/dev/null || { echo "(no valgrind: no instruction counts; make bench-deps installs it)"; exit 0; }
for size in 100 1000; do
  for b in $builds; do
    PGDATABASE="${b}_$size" PGOPTIONS="-c log_statement=all" "$(bin "$b")" refresh v_1 --yes >/dev/null
    for n in 40 200; do "$MATVIEWS" bench/recorder_replay.lua "$BENCH_TMP/server.log" $n >"$BENCH_TMP/replay.$b.$size.$n"; done
  done
done
$AS "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -m fast -w stop >/dev/null
echo
echo "server instructions per begin + finish pair (callgrind, a single-user backend replaying the last run's two statements)"
for size in 100 1000; do
  for b in $builds; do
    for n in 40 200; do
      $AS valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/cg.$b.$size.$n" \
        "$PGBIN/postgres" --single -j -D "$BENCH_TMP/data" "${b}_$size" <"$BENCH_TMP/replay.$b.$size.$n" >"$BENCH_TMP/cg.log" 2>&1
      ! grep -q "ERROR:" "$BENCH_TMP/cg.log" || { grep -m3 "ERROR:" "$BENCH_TMP/cg.log"; exit 1; }
    done
    ir=$(for n in 40 200; do awk '/^(summary|totals):/ { print $2; exit }' "$BENCH_TMP/cg.$b.$size.$n"; done | tr '\n' ' ')
    echo "$ir" | awk -v s="$size" -v b="$b" '{ printf "  catalog of %4d definitions, %-6s %.2f M\n", s, b, ($2 - $1) / 160 / 1e6 }'
  done
done
