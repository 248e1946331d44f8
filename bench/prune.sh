#!/bin/sh
# Runs bench/prune.lua on a scratch embedded cluster (MATVIEWS_HOME in a
# temporary directory), stopped and removed afterwards. Arguments: ROWS VIEWS.
set -eu
cd "$(dirname "$0")/.."
[ -x ./matviews ] || make
export MATVIEWS_HOME="$(mktemp -d /tmp/matviews-bench.XXXXXX)"
chmod 755 "$MATVIEWS_HOME"
unset DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
trap './matviews db stop >/dev/null 2>&1; rm -rf "$MATVIEWS_HOME"' EXIT
./matviews bench/prune.lua "$@"
