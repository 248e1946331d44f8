#!/bin/sh
# Benchmark 4: peak resident memory (VmHWM, from /usr/bin/time -v) of
# `matviews refresh --all --yes` over 1,000 small views (target under 20 MB),
# and of the REPL at rest (VmRSS/VmHWM from /proc after it has started and
# connected). psql's figures are printed beside them for scale.
# Usage: sh bench/rss.sh [VIEWS]
. bench/lib.sh
VIEWS=${1:-1000}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: run make bench-deps" >&2; exit 2; }
bench_start
machine
q <<SQL
CREATE TABLE rss_src AS SELECT g AS id, g % 10 AS k FROM generate_series(1, 100) g;
DO \$\$ BEGIN
  FOR i IN 1..$VIEWS LOOP
    EXECUTE format('CREATE MATERIALIZED VIEW %I AS SELECT id, k FROM rss_src WHERE k = %s', 'rss_mv_' || i, i % 10);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (id)', 'rss_mv_' || i);
  END LOOP;
END \$\$;
INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns)
  SELECT 'rss_mv_' || i, 'SELECT id, k FROM rss_src WHERE k = ' || (i % 10), 0, '["id"]'
  FROM generate_series(1, $VIEWS) i;
SQL

# Prints the peak RSS in MB and the wall time of a command, from time -v.
peak() {
  /usr/bin/time -v "$@" >/dev/null 2>"$BENCH_TMP/time.txt" </dev/null || { cat "$BENCH_TMP/time.txt"; exit 1; }
  awk -F': ' '/Maximum resident set size/ { kb = $2 } /Elapsed \(wall clock\)/ { w = $2 }
    END { printf "%.1f MB peak RSS, %s wall", kb / 1024, w }' "$BENCH_TMP/time.txt"
}

echo
echo "refresh --all over $VIEWS views: $(peak "$MATVIEWS" refresh --all --yes)"
echo "runs recorded: $(q -At -c "SELECT count(*) FROM mat_view_refresh_runs")"
echo "psql -c 'select 1' for scale:   $(peak psql -X -q -c 'select 1')"

# The REPL at rest: started with its input on a fifo held open, connected,
# one query answered (checked in its output), then idle 2 s; VmRSS and VmHWM
# from /proc. Once on a plain pipe, once on a pseudo-terminal (script(1):
# readline, history, completion loaded).
if ! "$MATVIEWS" help repl >/dev/null 2>&1; then echo "REPL at rest: no repl command in this build"; exit 0; fi
export MATVIEWS_HISTORY="$BENCH_TMP/history"
mkfifo "$BENCH_TMP/in"
# Prints the REPL's memory; $1 = label, $2 = pid of the REPL process.
repl_rss() {
  sleep 2
  grep -q 100 "$BENCH_TMP/repl.out" || { echo "$1: the REPL did not answer"; cat "$BENCH_TMP/repl.out"; exit 1; }
  awk '/VmHWM|VmRSS/ { printf "%s %.1f MB  ", $1, $2 / 1024 }' "/proc/$2/status" | sed "s/^/$1: /"
  echo
}
"$MATVIEWS" repl <"$BENCH_TMP/in" >"$BENCH_TMP/repl.out" 2>&1 &
rpid=$!
exec 3>"$BENCH_TMP/in"
echo 'mv.query("select count(*) AS n from rss_src")' >&3
repl_rss "REPL at rest (pipe)" "$rpid"
exec 3>&-
wait "$rpid" || true
if command -v script >/dev/null; then
  script -q -c "exec $MATVIEWS repl" /dev/null <"$BENCH_TMP/in" >"$BENCH_TMP/repl.out" 2>&1 &
  spid=$!
  exec 3>"$BENCH_TMP/in"
  echo 'mv.query("select count(*) AS n from rss_src")' >&3
  sleep 1
  rpid=$(ps -o pid= --ppid "$spid" | tr -d ' ')
  [ "$(cat "/proc/$rpid/comm")" = matviews ] || { echo "REPL at rest (terminal): no matviews process under script"; exit 1; }
  repl_rss "REPL at rest (terminal)" "$rpid"
  echo 'os.exit(0)' >&3
  exec 3>&-
  wait "$spid" || true
fi
