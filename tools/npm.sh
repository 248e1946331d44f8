#!/bin/sh
# Installs the npm packages pinned in package-lock.json (the charting library
# that `matviews report --html` inlines) into node_modules/ with `npm ci`:
# exact versions, integrity checked, no install scripts. Installs Debian's
# npm first when there is none.
cd "$(dirname "$0")/.." || exit 1
if ! command -v npm >/dev/null 2>&1; then
  sh tools/deps.sh npm || exit 1
fi
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error || exit 1
