#!/bin/sh
# Runs bench/report.lua on a scratch embedded cluster. Arguments: ROWS VIEWS.
exec sh "$(dirname "$0")/scratch.sh" bench/report.lua "$@"
