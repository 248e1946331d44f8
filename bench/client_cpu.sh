#!/bin/sh
# The matviews process's own CPU per recorded refresh: user + system CPU
# (from /usr/bin/time) of `matviews refresh --all --yes` over VIEWS tiny
# views (10 rows, a unique index each, as bench/many_views.sh builds them),
# divided by the number of views, the median of ROUNDS runs; psql's CPU
# for `psql -X -q -f` of the same REFRESH statements beside it, for scale.
# The process's start (configuration, connections, the targets listed) is
# in the figure too: `refresh --all` over the first view alone is printed
# apart, and the per-view figure is also given without it.
# With BASE=/path/to/another/matviews (a build of another commit: it finds
# its Lua next to itself), the two are run in turn, ROUNDS times each, and
# the ratio this/BASE of the per-view CPU is printed.
# Usage: sh bench/client_cpu.sh [VIEWS [ROUNDS]]   (defaults 1000 and 5)
. bench/lib.sh
VIEWS=${1:-1000}
ROUNDS=${2:-5}
BASE=${BASE:-}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: run make bench-deps" >&2; exit 2; }
bench_start
machine
many_views postgres "$VIEWS" "SELECT id FROM src"
"$MATVIEWS" refresh --all --yes >/dev/null
i=1; : >"$BENCH_TMP/all.sql"
while [ "$i" -le "$VIEWS" ]; do echo "REFRESH MATERIALIZED VIEW v_$i;" >>"$BENCH_TMP/all.sql"; i=$(( i + 1 )); done

# user+system CPU seconds of a command (its output dropped).
cpu() {
  /usr/bin/time -f '%U %S' -o "$BENCH_TMP/cpu.txt" "$@" >/dev/null </dev/null || { cat "$BENCH_TMP/cpu.txt"; exit 1; }
  awk '{ printf "%.3f\n", $1 + $2 }' "$BENCH_TMP/cpu.txt"
}
# The median of the numbers on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$BENCH_TMP/this"; : >"$BENCH_TMP/base"; : >"$BENCH_TMP/psql"; : >"$BENCH_TMP/one"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  cpu "$MATVIEWS" refresh --all --yes >>"$BENCH_TMP/this"
  [ -n "$BASE" ] && cpu "$BASE" refresh --all --yes >>"$BENCH_TMP/base"
  cpu psql -X -q -f "$BENCH_TMP/all.sql" >>"$BENCH_TMP/psql"
  cpu "$MATVIEWS" refresh v_1 --yes >>"$BENCH_TMP/one"
  r=$(( r + 1 ))
done
this=$(median <"$BENCH_TMP/this"); one=$(median <"$BENCH_TMP/one"); ps=$(median <"$BENCH_TMP/psql")
echo
echo "CPU of the client process, median of $ROUNDS runs over $VIEWS tiny views (user + sys):"
awk -v t="$this" -v o="$one" -v p="$ps" -v n="$VIEWS" 'BEGIN {
  printf "  matviews refresh --all: %.3f s, %.3f ms per view (%.3f ms per view without the %.3f s of refresh of one view)\n", t, t * 1000 / n, (t - o) * 1000 / (n - 1), o
  printf "  psql -f of the REFRESHes: %.3f s, %.3f ms per view; matviews / psql %.2f\n", p, p * 1000 / n, t / p }'
if [ -n "$BASE" ]; then
  base=$(median <"$BENCH_TMP/base")
  awk -v t="$this" -v b="$base" -v n="$VIEWS" 'BEGIN {
    printf "  BASE refresh --all: %.3f s, %.3f ms per view; this / BASE %.2f\n", b, b * 1000 / n, t / b }'
fi
echo "load: $(uptime | sed 's/.*load/load/')"
