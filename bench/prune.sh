#!/bin/sh
# Runs bench/prune.lua on a scratch embedded cluster. Arguments: ROWS VIEWS.
exec sh "$(dirname "$0")/scratch.sh" bench/prune.lua "$@"
