#!/bin/sh
# The matviews process's own CPU per recorded refresh: user + system CPU
# (wait4's rusage) of `matviews refresh --all --yes` over VIEWS tiny
# views (10 rows, a unique index each, as bench/many_views.sh builds them),
# divided by the number of views, the median of ROUNDS runs; psql's CPU
# for `psql -X -q -f` of the same REFRESH statements beside it, for scale.
# The process's start (configuration, connections, the targets listed) is
# in the figure too: `refresh v_1` (the start and one view) is printed
# apart, and the per-view figure without it.
# With BASE=/path/to/another/matviews (a build of another commit: it finds
# its Lua next to itself), the two are run in turn, ROUNDS times each, and
# the ratio this/BASE of the per-view CPU is printed. With INSTRUCTIONS=1
# (valgrind installed), the user-space instructions per view of one
# `refresh --all` (callgrind, ~50 times slower) are printed too: a figure a
# loaded machine does not move, for telling small changes apart.
# Usage: sh bench/client_cpu.sh [VIEWS [ROUNDS]]   (defaults 1000 and 5)
. bench/lib.sh
VIEWS=${1:-1000}
ROUNDS=${2:-5}
BASE=${BASE:-}
command -v python3 >/dev/null || { echo "missing python3 (it reads a child's rusage)" >&2; exit 2; }
bench_start
machine
many_views postgres "$VIEWS" "SELECT id FROM src"
"$MATVIEWS" refresh --all --yes >/dev/null
i=1; : >"$BENCH_TMP/all.sql"
while [ "$i" -le "$VIEWS" ]; do echo "REFRESH MATERIALIZED VIEW v_$i;" >>"$BENCH_TMP/all.sql"; i=$(( i + 1 )); done

# user+system CPU seconds of a command (its output dropped): the rusage of
# that one child (wait4, microseconds; /usr/bin/time prints hundredths).
cpu() {
  python3 -c 'import os, sys
null = os.open(os.devnull, os.O_RDWR)
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)])
_, status, ru = os.wait4(pid, 0)
if os.waitstatus_to_exitcode(status) != 0: sys.exit("failed: " + " ".join(sys.argv[1:]))
print("%.6f" % (ru.ru_utime + ru.ru_stime))' "$@" || exit 1
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
this=$(median <"$BENCH_TMP/this"); ps=$(median <"$BENCH_TMP/psql"); one=$(median <"$BENCH_TMP/one")
echo
echo "CPU of the client process, median of $ROUNDS runs over $VIEWS tiny views (user + sys):"
awk -v t="$this" -v p="$ps" -v o="$one" -v n="$VIEWS" 'BEGIN {
  printf "  matviews refresh --all: %.3f s, %.3f ms per view; refresh v_1 (the start and one view) %.1f ms;\n", t, t * 1000 / n, o * 1000
  printf "    without the start: %.3f ms per view\n", (t - o) * 1000 / (n - 1)
  printf "  psql -f of the REFRESHes: %.3f s, %.3f ms per view; matviews / psql %.2f\n", p, p * 1000 / n, t / p }'
if [ -n "$BASE" ]; then
  base=$(median <"$BENCH_TMP/base")
  awk -v t="$this" -v b="$base" -v n="$VIEWS" 'BEGIN {
    printf "  BASE refresh --all: %.3f s, %.3f ms per view; this / BASE %.3f\n", b, b * 1000 / n, t / b }'
fi
# Instructions of one refresh --all of BIN (callgrind's total).
instructions() {
  valgrind --tool=callgrind --callgrind-out-file="$BENCH_TMP/callgrind.out" "$1" refresh --all --yes 2>&1 >/dev/null </dev/null \
    | awk '/refs:/ { gsub(",", "", $NF); print $NF }'
}
if [ "${INSTRUCTIONS:-0}" = 1 ]; then
  command -v valgrind >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind" >&2; exit 2; }
  it=$(instructions "$MATVIEWS")
  awk -v i="$it" -v n="$VIEWS" 'BEGIN { printf "  instructions (callgrind, user space): %.0f per view\n", i / n }'
  if [ -n "$BASE" ]; then
    ib=$(instructions "$BASE")
    awk -v i="$it" -v b="$ib" -v n="$VIEWS" 'BEGIN { printf "  BASE: %.0f per view; this / BASE %.3f\n", b / n, i / b }'
  fi
fi
echo "load: $(uptime | sed 's/.*load/load/')"
