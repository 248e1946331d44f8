#!/bin/sh
# Benchmark 5: the validator's table on the demo at the default scale (50,000
# users), next to the speedups the original project published for its 2-, 3-
# and 4-table views (15x, 70x, 161x). Runs the demo on a throwaway cluster,
# then `matviews validate --iterations N --csv`.
# Usage: sh bench/validate_demo.sh [ITERATIONS] [USERS]
. bench/lib.sh
ITER=${1:-10}
USERS=${2:-50000}
bench_start
machine
start=$(date +%s%N)
"$MATVIEWS" run demo/demo.lua --users "$USERS" >"$BENCH_TMP/demo.out"
echo "demo (first run, $USERS users): $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N)
"$MATVIEWS" run demo/demo.lua --users "$USERS" >/dev/null
echo "demo (second run, reusing): $(( ($(date +%s%N) - start) / 1000000 )) ms"
echo
"$MATVIEWS" validate --iterations "$ITER" --warmup 2 --csv "$BENCH_TMP/validate.csv"
echo
printf '%-26s %7s %10s %10s %10s\n' view tables speedup published contents
tail -n +2 "$BENCH_TMP/validate.csv" | awk -F, '
  BEGIN { t["public.mv_users"] = 1; t["public.mv_user_accounts"] = 2; t["public.mv_user_accounts_events"] = 3
          t["public.mv_user_activity"] = 4; p[1] = "-"; p[2] = "15x"; p[3] = "70x"; p[4] = "161x" }
  { printf "%-26s %7d %9.1fx %10s %10s\n", substr($1, 8), t[$1], $9, p[t[$1]], $12 }'
