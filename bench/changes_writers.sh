#!/bin/sh
# The cost of change tracking (refresh_when = "changed") to writers:
# pgbench's built-in TPC-B-like workload (pgbench -i -s 10; -c 2 -T SECS),
# default server settings (fsync on), with a tracked view over
# pgbench_accounts and pgbench_history (statement triggers on both) and
# without (triggers dropped), in alternating rounds; then single-row insert
# transactions into pgbench_history with fsync off, the same way. Prints the
# median tps of each side and the drop (target: at most 5 %).
# Usage: sh bench/changes_writers.sh [ROUNDS [SECS]]
BENCH_SHARED_BUFFERS=default
. bench/lib.sh
ROUNDS=${1:-3}
SECS=${2:-30}
bench_start
machine
pgbench -q -i -s 10 >/dev/null 2>&1
DEFS="$BENCH_TMP/defs"
mkdir -p "$DEFS"
cat > "$DEFS/v.lua" <<'LUA'
view "pgb_tracked" {
  sql = [[ SELECT a.bid, sum(a.abalance) AS balance,
           (SELECT count(*) FROM pgbench_history h WHERE h.bid = a.bid) AS history
           FROM pgbench_accounts a GROUP BY a.bid ]],
  refresh_when = "changed",
}
LUA
"$MATVIEWS" apply --definitions "$DEFS" >/dev/null
"$MATVIEWS" create pgb_tracked --yes >/dev/null
on()  { "$MATVIEWS" apply --definitions "$DEFS" >/dev/null; }
off() { q -c "DROP TRIGGER IF EXISTS matviews_track_changes ON pgbench_accounts; DROP TRIGGER IF EXISTS matviews_track_changes ON pgbench_history; TRUNCATE matviews_table_changes"; }
tps() { pgbench -n "$@" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n' > "$BENCH_TMP/insert.sql"

round() { # label, pgbench args...
  label=$1; shift
  with="" without=""
  i=1
  while [ "$i" -le "$ROUNDS" ]; do
    for side in $( [ $((i % 2)) = 1 ] && echo "on off" || echo "off on" ); do
      $side
      q -c "VACUUM ANALYZE pgbench_history" >/dev/null 2>&1; q -c CHECKPOINT
      t=$(tps "$@")
      if [ "$side" = on ]; then with="$with $t"; else without="$without $t"; fi
    done
    i=$((i + 1))
  done
  "$MATVIEWS" -e "
    local function med(s) local t = {} for x in s:gmatch('%S+') do t[#t + 1] = tonumber(x) end
      table.sort(t) local n = #t return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2 end
    local w, wo = med('$with'), med('$without')
    print(('$label: tracked tps median %.1f (%s), untracked %.1f (%s): drop %.1f %%'):format(w, '$with', wo, '$without', (1 - w / wo) * 100))"
}
round "TPC-B-like, -c 2 -T $SECS, fsync on" -c 2 -T "$SECS"
q -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
round "single-row inserts, -c 2 -T $SECS, fsync off" -c 2 -T "$SECS" -f "$BENCH_TMP/insert.sql"
echo "change rows recorded in the last tracked run: $(q -At -c 'SELECT count(*) FROM matviews_table_changes')"
echo "load: $(uptime | sed 's/.*load/load/')"
