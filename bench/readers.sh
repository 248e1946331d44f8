#!/bin/sh
# Benchmark 2: readers during a refresh. pgbench clients read a 1,000,000-row
# view by its unique key while `matviews refresh` rebuilds it with each
# strategy in turn (1% of the source rows changed before each refresh).
# Prints, per strategy, the refresh wall time and the readers' p99 and max
# latency over the run (targets: swap max under 50 ms, concurrent under 20 ms;
# regular blocks readers for the whole refresh, shown for contrast), plus a
# run with no refresh as the floor.  Usage: sh bench/readers.sh [CLIENTS]
. bench/lib.sh
CLIENTS=${1:-2}
bench_start
machine
q <<'SQL'
CREATE TABLE big_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v FROM generate_series(1, 1000000) g;
ALTER TABLE big_src ADD PRIMARY KEY (id);
CREATE MATERIALIZED VIEW big_mv AS SELECT id, k, v FROM big_src;
CREATE UNIQUE INDEX big_mv_id ON big_mv (id);
VACUUM ANALYZE;
SQL
define big_mv 'SELECT id, k, v FROM big_src' 0 id
cat >"$BENCH_TMP/read.sql" <<'SQL'
\set id random(1, 1000000)
SELECT id, k, v FROM big_mv WHERE id = :id;
SQL

# Prints "p99 max count" (ms) of the latencies in the pgbench logs $1.*
latencies() {
  cat "$1".* | awk '{ print $3 / 1000 }' | sort -n | awk '
    { v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f %.2f %d\n", v[i], v[NR], NR }'
}

# One round: pgbench for $2 s; after 2 s, refreshes with strategy $1 (none: no refresh).
round() {
  strategy=$1; secs=$2
  rm -f "$BENCH_TMP"/pgb.*
  "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$secs" -f "$BENCH_TMP/read.sql" \
    -l --log-prefix="$BENCH_TMP/pgb" >"$BENCH_TMP/pgbench.out" 2>&1 &
  pid=$!
  sleep 2
  refresh_ms="-"
  if [ "$strategy" != none ]; then
    code=$(printf '%s' "regular 0 concurrent 1 swap 2" | tr ' ' '\n' | paste - - | awk -v s="$strategy" '$1 == s { print $2 }')
    q -c "UPDATE mat_view_definitions SET refresh_strategy = $code WHERE name = 'big_mv'"
    q -c "UPDATE big_src SET v = v + 1 WHERE id % 100 = $(date +%S)"
    t0=$(date +%s%N)
    "$MATVIEWS" refresh big_mv --yes >/dev/null
    refresh_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  fi
  wait "$pid"
  set -- $(latencies "$BENCH_TMP/pgb")
  printf '%-11s %10s %10s %10s %12s\n' "$strategy" "$refresh_ms" "$1" "$2" "$3"
}

echo
printf '%-11s %10s %10s %10s %12s\n' strategy refresh_ms p99_ms max_ms transactions
round none 6
for s in regular concurrent swap; do round "$s" 14; done
echo "clients: $CLIENTS; latencies over the whole pgbench run (2 s before the refresh, until it ends)"
