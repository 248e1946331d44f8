#!/bin/sh
# Runs a bench/ Lua script in the host on a scratch embedded cluster
# (MATVIEWS_HOME in a temporary directory), stopped and removed afterwards.
#   sh bench/scratch.sh bench/NAME.lua [args]
set -eu
cd "$(dirname "$0")/.."
[ -x ./matviews ] || make
export MATVIEWS_HOME="$(mktemp -d /tmp/matviews-bench.XXXXXX)"
chmod 755 "$MATVIEWS_HOME"
unset DATABASE_URL PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
trap './matviews db stop >/dev/null 2>&1; rm -rf "$MATVIEWS_HOME"' EXIT
./matviews "$@"
