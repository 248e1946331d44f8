#!/bin/sh
# The fixed cost of a run: everything of `refresh --all` but the per-view
# work. Interleaved ratios (bench/lib.sh `interleaved`) of
#   1. `matviews refresh --all --yes` over ONE tiny view against `psql -X -q
#      -f` of its REFRESH (psql's own start, ~28 ms of libpq and openssl
#      loading, is the floor);
#   2. `matviews version` against `matviews -e 'return 1'` (the CLI's own
#      start: its command modules and argparse parser);
#   3. with BASE=/path/to/another/matviews (a build of another commit, which
#      finds its Lua next to itself): `refresh --all` over one view and over
#      100 tiny views, this build against BASE, and `--parallel 2` over the
#      100 views against BASE.
# FSYNC=off turns fsync off for the cluster (a loaded machine's flush times
# hide the rest). Usage: [BASE=...] [FSYNC=off] sh bench/startup.sh [ROUNDS]
. bench/lib.sh
ROUNDS=${1:-15}
BASE=${BASE:-}
bench_start
machine
[ "${FSYNC:-on}" = off ] && q -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
make_db one 1 tiny
make_db tiny 100 tiny
echo "REFRESH MATERIALIZED VIEW v_1;" >"$BENCH_TMP/one.sql"

echo
interleaved "one tiny view: refresh --all / psql -f" "$ROUNDS" 3 \
  "env PGDATABASE=one $MATVIEWS refresh --all --yes" "psql -X -q -d one -f $BENCH_TMP/one.sql"
interleaved "matviews version / matviews -e 'return 1'" "$ROUNDS" 3 \
  "$MATVIEWS version" "$MATVIEWS -e return"
if [ -n "$BASE" ]; then
  interleaved "one tiny view: refresh --all, this build / BASE" "$ROUNDS" 3 \
    "env PGDATABASE=one $MATVIEWS refresh --all --yes" "env PGDATABASE=one $BASE refresh --all --yes"
  interleaved "100 tiny views: refresh --all, this build / BASE" "$ROUNDS" 2 \
    "env PGDATABASE=tiny $MATVIEWS refresh --all --yes" "env PGDATABASE=tiny $BASE refresh --all --yes"
  interleaved "100 tiny views: refresh --all --parallel 2, this build / BASE" "$ROUNDS" 2 \
    "env PGDATABASE=tiny $MATVIEWS refresh --all --parallel 2 --yes" "env PGDATABASE=tiny $BASE refresh --all --parallel 2 --yes"
fi
echo "load: $(uptime | sed 's/.*load/load/')"
