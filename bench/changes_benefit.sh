#!/bin/sh
# The benefit of refresh --if-changed (bench/changes_benefit.lua) on a
# throwaway cluster of its own (bench/lib.sh).
# Usage: sh bench/changes_benefit.sh [ROUNDS [ROWS]]
. bench/lib.sh
bench_start
machine
"$MATVIEWS" bench/changes_benefit.lua "$MATVIEWS" "${1:-5}" "${2:-100000}"
echo "load: $(uptime | sed 's/.*load/load/')"
