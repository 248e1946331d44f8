#!/bin/sh
# The cost of change tracking (refresh_when = "changed") to writers:
# pgbench's built-in TPC-B-like workload (pgbench -i -s 10; -c 2 -T SECS),
# default server settings (fsync on), with a tracked view over
# pgbench_accounts and pgbench_history (statement triggers on both); then
# single-row insert transactions into pgbench_history with fsync off. Three
# sides, in rotating order every round so none always runs first:
#   untracked  no triggers;
#   tracked    the triggers apply installs (schema step 12: one plain INSERT
#              into the UNLOGGED change table);
#   step11     the trigger of schema step 11, rebuilt here for comparison
#              (logged table with a primary key, ON CONFLICT DO NOTHING,
#              a SET search_path clause on the function).
# Prints each side's median tps and rounds, and each tracked side's drop
# against untracked (target: at most 5 %): the drop of the medians, and the
# median of the drops of each round (steadier when the machine's load moves).
# Usage: sh bench/changes_writers.sh [ROUNDS [SECS]]
BENCH_SHARED_BUFFERS=default
. bench/lib.sh
ROUNDS=${1:-5}
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
q <<'SQL'
CREATE TABLE bench_step11_changes (relid oid NOT NULL, xid xid8 NOT NULL, PRIMARY KEY (relid, xid));
CREATE FUNCTION bench_step11_note() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $f$
BEGIN
  INSERT INTO bench_step11_changes (relid, xid) VALUES (TG_RELID, pg_current_xact_id())
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$f$;
SQL
TABLES="pgbench_accounts pgbench_history"
off() {
  for t in $TABLES; do
    q -c "DROP TRIGGER IF EXISTS matviews_track_changes ON $t" -c "DROP TRIGGER IF EXISTS bench_step11 ON $t"
  done
  q -c "TRUNCATE matviews_table_changes, bench_step11_changes"
}
untracked() { off; }
tracked() { off; "$MATVIEWS" apply --definitions "$DEFS" >/dev/null; }
step11() {
  off
  for t in $TABLES; do
    q -c "CREATE TRIGGER bench_step11 AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON $t FOR EACH STATEMENT EXECUTE FUNCTION bench_step11_note()"
  done
}
tps() { pgbench -n "$@" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1; }
printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n' > "$BENCH_TMP/insert.sql"

round() { # label, pgbench args...
  label=$1; shift
  r_untracked="" r_tracked="" r_step11=""
  i=1
  while [ "$i" -le "$ROUNDS" ]; do
    case $((i % 3)) in
      1) order="untracked tracked step11";;
      2) order="tracked step11 untracked";;
      0) order="step11 untracked tracked";;
    esac
    for side in $order; do
      $side >/dev/null 2>&1
      q -c "VACUUM ANALYZE pgbench_history" >/dev/null 2>&1; q -c CHECKPOINT
      t=$(tps "$@")
      eval "r_$side=\"\$r_$side $t\""
    done
    i=$((i + 1))
  done
  "$MATVIEWS" -e "
    local function med(s) local t = {} for x in s:gmatch('%S+') do t[#t + 1] = tonumber(x) end
      table.sort(t) local n = #t return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2 end
    -- the drop of each round (the sides of one round ran back to back, so a
    -- change of the machine's load between rounds cancels out), then its median
    local function drops(s, base)
      local a, b, out = {}, {}, {}
      for x in s:gmatch('%S+') do a[#a + 1] = tonumber(x) end
      for x in base:gmatch('%S+') do b[#b + 1] = tonumber(x) end
      for i = 1, #a do out[#out + 1] = ('%.1f'):format((1 - a[i] / b[i]) * 100) end
      return table.concat(out, ' ')
    end
    local u, t, o = med('$r_untracked'), med('$r_tracked'), med('$r_step11')
    local dt, dobj = drops('$r_tracked', '$r_untracked'), drops('$r_step11', '$r_untracked')
    print(('$label:'))
    print(('  untracked       %9.1f tps (%s)'):format(u, '$r_untracked'))
    print(('  tracked         %9.1f tps (%s): drop of medians %.1f %%, per round %s: median %.1f %%')
      :format(t, '$r_tracked', (1 - t / u) * 100, dt, med(dt)))
    print(('  step 11 trigger %9.1f tps (%s): drop of medians %.1f %%, per round %s: median %.1f %%')
      :format(o, '$r_step11', (1 - o / u) * 100, dobj, med(dobj)))"
}
round "TPC-B-like, -c 2 -T $SECS, fsync on" -c 2 -T "$SECS"
q -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
round "single-row inserts, -c 2 -T $SECS, fsync off" -c 2 -T "$SECS" -f "$BENCH_TMP/insert.sql"
echo "load: $(uptime | sed 's/.*load/load/')"
