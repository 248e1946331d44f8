#!/bin/sh
# The cost of change tracking (refresh_when = "changed") to writers:
# pgbench's built-in TPC-B-like workload (pgbench -i -s 10; -c 2 -T SECS),
# default server settings (fsync on), with a tracked view over
# pgbench_accounts and pgbench_history (statement triggers on both); then
# single-row insert transactions into pgbench_history with fsync off. Three
# sides, in rotating order every round so none always runs first:
#   untracked  no triggers;
#   C          the triggers apply installs when the server has the
#              extension matviews_changes (make install-pgext): the C
#              function inserts the change row directly, no SPI, no executor;
#   PL/pgSQL   the triggers apply installs with change_trigger = "plpgsql"
#              (one plain INSERT into the UNLOGGED change table, schema
#              step 12).
# Prints, per side, the tps of each round and the median, and for each
# tracked side its drop against untracked in every round (the sides of a
# round run back to back, so a change of the machine's load between rounds
# cancels out) and the median of those drops (target: at most 5 %). Also the
# server's CPU time per transaction (the backends' user + system time, from
# the postmaster's children, whose CPU is counted when they exit), which a
# busy machine disturbs less than tps.
# Usage: sh bench/changes_writers.sh [ROUNDS [SECS]]
BENCH_SHARED_BUFFERS=default
. bench/lib.sh
ROUNDS=${1:-5}
SECS=${2:-30}
[ -f "$(pg_config --sharedir)/extension/matviews_changes.control" ] || {
  echo "no extension matviews_changes on the server: run make install-pgext (as root)" >&2; exit 2; }
echo "load at start: $(uptime | sed 's/.*load/load/')"
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
echo 'change_trigger = "plpgsql"' > "$BENCH_TMP/plpgsql.lua"
echo '' > "$BENCH_TMP/auto.lua"
TABLES="pgbench_accounts pgbench_history"
PM=$(head -1 "$BENCH_TMP/data/postmaster.pid")
off() {
  for t in $TABLES; do q -c "SET client_min_messages = warning" -c "DROP TRIGGER IF EXISTS matviews_track_changes ON $t"; done
  q -c "TRUNCATE matviews_table_changes"
}
fn_is() { # the function every tracked table's trigger calls must be $1
  n=$(q -At -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'matviews_track_changes' AND tgfoid = '$1'::regproc")
  [ "$n" = 2 ] || { echo "the triggers do not call $1" >&2; exit 1; }
}
untracked() { off; }
C() { off; "$MATVIEWS" --config "$BENCH_TMP/auto.lua" apply --definitions "$DEFS" >/dev/null; fn_is matviews_note_change_c; }
PLpgSQL() { off; "$MATVIEWS" --config "$BENCH_TMP/plpgsql.lua" apply --definitions "$DEFS" >/dev/null; fn_is matviews_note_change; }
# the CPU ticks of the postmaster's exited children (utime + stime)
ticks() { awk '{ print $16 + $17 }' "/proc/$PM/stat"; }
# waits until no client backend but this one is left (their CPU is counted)
settle() {
  while [ "$(q -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")" != 0 ]; do
    sleep 0.1
  done
}
HZ=$(getconf CLK_TCK)
printf 'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 1, now());\n' > "$BENCH_TMP/insert.sql"

round() { # label, pgbench args...
  label=$1; shift
  r_untracked="" r_C="" r_PLpgSQL="" c_untracked="" c_C="" c_PLpgSQL=""
  i=1
  while [ "$i" -le "$ROUNDS" ]; do
    case $((i % 3)) in
      1) order="untracked C PLpgSQL";;
      2) order="C PLpgSQL untracked";;
      0) order="PLpgSQL untracked C";;
    esac
    for side in $order; do
      $side >/dev/null
      q -c "VACUUM ANALYZE pgbench_history" >/dev/null 2>&1; q -c CHECKPOINT
      settle; t0=$(ticks)
      out=$(pgbench -n "$@" 2>/dev/null)
      settle; t1=$(ticks)
      t=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
      n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
      us=$(awk "BEGIN { printf \"%.1f\", ($t1 - $t0) / $HZ * 1000000 / $n }")
      eval "r_$side=\"\$r_$side $t\"; c_$side=\"\$c_$side $us\""
    done
    echo "  round $i ($order): load $(cut -d' ' -f1 /proc/loadavg)" >&2
    i=$((i + 1))
  done
  "$MATVIEWS" -e "
    local function nums(s) local t = {} for x in s:gmatch('%S+') do t[#t + 1] = tonumber(x) end return t end
    local function med(t) t = { table.unpack(t) } table.sort(t) local n = #t
      return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2 end
    local function drops(a, b) local out = {} for i = 1, #a do out[i] = (1 - a[i] / b[i]) * 100 end return out end
    local function more(a, b) local out = {} for i = 1, #a do out[i] = (a[i] / b[i] - 1) * 100 end return out end
    local function list(t, f) local out = {} for i, x in ipairs(t) do out[i] = (f):format(x) end return table.concat(out, ' ') end
    local u, uc = nums('$r_untracked'), nums('$c_untracked')
    print('$label:')
    print(('  %-9s %9.1f tps (%s); CPU %.1f us/xact (%s)'):format('untracked', med(u), list(u, '%.0f'), med(uc), list(uc, '%.0f')))
    for _, s in ipairs({ { 'C', '$r_C', '$c_C' }, { 'PL/pgSQL', '$r_PLpgSQL', '$c_PLpgSQL' } }) do
      local r, c = nums(s[2]), nums(s[3])
      local d, m = drops(r, u), more(c, uc)
      print(('  %-9s %9.1f tps (%s); drop per round %s: median %.1f %%'):format(s[1], med(r), list(r, '%.0f'), list(d, '%.1f'), med(d)))
      print(('  %-9s CPU %.1f us/xact (%s); more per round %s: median %.1f %%'):format('', med(c), list(c, '%.0f'), list(m, '%.1f'), med(m)))
    end"
}
round "TPC-B-like, -c 2 -T $SECS, fsync on" -c 2 -T "$SECS"
q -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
round "single-row inserts, -c 2 -T $SECS, fsync off" -c 2 -T "$SECS" -f "$BENCH_TMP/insert.sql"
echo "load at end: $(uptime | sed 's/.*load/load/')"
