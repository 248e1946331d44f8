#!/bin/sh
# Benchmark: readers during `matviews apply` replacing a view's SQL. pgbench
# clients read a 1,000,000-row concurrent view by its unique key while apply
# replaces it with SQL that adds a column (built beside the live view, then
# put in place in one short transaction). Prints, per round, apply's wall
# time, the swap transaction's length (the create run's meta.lock_ms), the
# readers' p99, p99.9 and max latency (ms) and the lock waits of 10 ms or
# more the server logged; a round with no replace gives the floor. Rounds:
# the view alone, then with a plain view and a small materialized view that
# read it (both rebuilt inside the swap transaction, which lengthens it).
# Usage: sh bench/replace_readers.sh [CLIENTS]
. bench/lib.sh
CLIENTS=${1:-2}
bench_start
machine
big_source
q -c "VACUUM ANALYZE"
log_lock_waits
DEFS="$BENCH_TMP/defs"
mkdir -p "$DEFS"
cat >"$BENCH_TMP/read.sql" <<'SQL'
\set id random(1, 1000000)
SELECT * FROM big_mv WHERE id = :id;
SQL

# Writes the definition of big_mv with extra columns $1 (SQL text after v).
write_def() {
  cat >"$DEFS/big.lua" <<LUA
view "big_mv" {
  sql = "SELECT id, k, v$1 FROM big_src",
  strategy = "concurrent", unique = { "id" },
}
LUA
}

# One round: label $1, extra columns $2 (empty: no replace, the floor).
round() {
  label=$1
  rm -f "$BENCH_TMP"/pgb.*
  log_from=$(( $(wc -l <"$BENCH_TMP/server.log") + 1 ))
  "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T 8 -f "$BENCH_TMP/read.sql" \
    -l --log-prefix="$BENCH_TMP/pgb" >"$BENCH_TMP/pgbench.out" 2>&1 &
  pid=$!
  sleep 2
  apply_ms="-"; lock_ms="-"
  if [ -n "$2" ]; then
    write_def "$2"
    t0=$(date +%s%N)
    "$MATVIEWS" apply --definitions "$DEFS" >"$BENCH_TMP/apply.out"
    apply_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    grep -q "^replace big_mv" "$BENCH_TMP/apply.out" || { cat "$BENCH_TMP/apply.out"; exit 1; }
    lock_ms=$(q -At -c "SELECT meta->>'lock_ms' FROM mat_view_create_runs ORDER BY id DESC LIMIT 1")
  fi
  wait "$pid"
  waits=$(tail -n "+$log_from" "$BENCH_TMP/server.log" | grep -c "still waiting" || true)
  set -- $(latencies "$BENCH_TMP/pgb")
  printf '%-26s %9s %8s %8s %8s %9s %12s %10s\n' "$label" "$apply_ms" "$lock_ms" "$1" "$2" "$3" "$4" "$waits"
}

write_def ""
"$MATVIEWS" apply --definitions "$DEFS" >/dev/null
echo
printf '%-26s %9s %8s %8s %8s %9s %12s %10s\n' round apply_ms swap_ms p99_ms p999_ms max_ms transactions lock_waits
round "none (floor)" ""
round "replace, no dependents" ", v * 2 AS w"
round "replace, no dependents" ", v * 3 AS w"
q -c "CREATE VIEW big_v AS SELECT id, v FROM big_mv" \
  -c "CREATE MATERIALIZED VIEW big_by_k AS SELECT k, count(*) AS n FROM big_mv GROUP BY k"
round "replace, 2 dependents" ", v * 4 AS w"
round "replace, 2 dependents" ", v * 5 AS w"
