#!/bin/sh
# Benchmark 2: readers during a refresh. pgbench clients read a 1,000,000-row
# view by its unique key while `matviews refresh` rebuilds it with each
# strategy in turn (1% of the source rows changed before each refresh).
# Prints, per strategy, the refresh wall time and the readers' p99 and max
# latency over the run (targets: swap max under 50 ms, concurrent under 20 ms;
# regular blocks readers for the whole refresh, shown for contrast), plus a
# run with no refresh as the floor, and how many lock waits of 10 ms or more
# the server logged during each round.  Usage: sh bench/readers.sh [CLIENTS]
# BENCH_REFRESH=psql refreshes with psql's REFRESH [CONCURRENTLY] instead of
# matviews (regular and concurrent only): PostgreSQL's own floor.
. bench/lib.sh
CLIENTS=${1:-2}
bench_start
machine
big_source
q <<'SQL'
CREATE MATERIALIZED VIEW big_mv AS SELECT id, k, v FROM big_src;
CREATE UNIQUE INDEX big_mv_id ON big_mv (id);
VACUUM ANALYZE;
SQL
define big_mv 'SELECT id, k, v FROM big_src' 0 id
# Every lock wait of 10 ms or more is logged ("still waiting"), so each round
# can say whether any reader (or the refresh) waited on a lock that long.
log_lock_waits
cat >"$BENCH_TMP/read.sql" <<'SQL'
\set id random(1, 1000000)
SELECT id, k, v FROM big_mv WHERE id = :id;
SQL

# Refreshes big_mv with strategy $1 (after changing 1% of the source rows);
# prints the wall time in ms.
refresh() {
  code=$(echo "$1" | sed 's/regular/0/; s/concurrent/1/; s/swap/2/')
  q -c "UPDATE mat_view_definitions SET refresh_strategy = $code WHERE name = 'big_mv'"
  q -c "UPDATE big_src SET v = v + 1 WHERE id % 100 = $(date +%S)"
  t0=$(date +%s%N)
  if [ "${BENCH_REFRESH:-matviews}" = psql ]; then
    q -c "REFRESH MATERIALIZED VIEW $([ "$1" = concurrent ] && echo CONCURRENTLY) big_mv"
  else
    "$MATVIEWS" refresh big_mv --yes >/dev/null
  fi
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}

# One round for strategy $1 (none: no refresh): an untimed refresh without
# readers sizes the run, then pgbench reads from 2 s before the refresh until
# well after it (2 s + twice the untimed refresh).
round() {
  strategy=$1; secs=6
  if [ "$strategy" != none ]; then secs=$(( 4 + 2 * $(refresh "$strategy") / 1000 )); fi
  rm -f "$BENCH_TMP"/pgb.*
  log_from=$(( $(wc -l <"$BENCH_TMP/server.log") + 1 ))
  "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$secs" -f "$BENCH_TMP/read.sql" \
    -l --log-prefix="$BENCH_TMP/pgb" >"$BENCH_TMP/pgbench.out" 2>&1 &
  pid=$!
  sleep 2
  refresh_ms="-"
  [ "$strategy" != none ] && refresh_ms=$(refresh "$strategy")
  wait "$pid"
  waits=$(tail -n "+$log_from" "$BENCH_TMP/server.log" | grep -c "still waiting" || true)
  set -- $(latencies "$BENCH_TMP/pgb")
  printf '%-11s %10s %8s %8s %10s %12s %10s\n' "$strategy" "$refresh_ms" "$1" "$2" "$3" "$4" "$waits"
}

echo
printf '%-11s %10s %8s %8s %10s %12s %10s\n' strategy refresh_ms p99_ms p999_ms max_ms transactions lock_waits
round none
STRATEGIES="regular concurrent swap"
[ "${BENCH_REFRESH:-matviews}" = psql ] && STRATEGIES="regular concurrent"
for s in $STRATEGIES; do round "$s"; done
echo "clients: $CLIENTS; latencies over the whole pgbench run (from 2 s before the refresh to after its end);"
echo "lock_waits: lock waits of 10 ms or more the server logged during the round (readers or refresh)"
echo "load: $(uptime | sed 's/.*load/load/')"
