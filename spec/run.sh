#!/bin/sh
# The spec runner behind `make test`: starts one throwaway PostgreSQL cluster
# (own socket directory and port, socket only), runs every spec with busted
# inside the host (busted --lua=BIN), removes the cluster at the end whatever
# happens, and ends with a line of its own: "N passed, N failed".
# Each host named in MATVIEWS_BINS (default ./matviews) runs the whole suite;
# `make test` names ./matviews and ./matviews-asan (AddressSanitizer + UBSan).
set -u
BINS=${MATVIEWS_BINS:-./matviews}
PGBIN=$(pg_config --bindir)
PORT=${MATVIEWS_SPEC_PORT:-55432}
TMP=$(mktemp -d /tmp/matviews-spec.XXXXXX)
chmod 755 "$TMP"
OUT="$TMP/busted.out"
AS=""
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; fi

cleanup() {
  [ -d "$TMP/embedded/pgdata" ] && $AS "$PGBIN/pg_ctl" -D "$TMP/embedded/pgdata" -m immediate -w stop >/dev/null 2>&1
  $AS "$PGBIN/pg_ctl" -D "$TMP/data" -m immediate -w stop >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

mkdir "$TMP/data" && [ -z "$AS" ] || chown postgres "$TMP" "$TMP/data"
if ! $AS "$PGBIN/initdb" -D "$TMP/data" -U postgres -A trust -E UTF8 --no-sync >"$TMP/initdb.log" 2>&1; then
  cat "$TMP/initdb.log"; echo "0 passed, 1 failed"; exit 1
fi
cat >>"$TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$TMP'
port = $PORT
fsync = off
full_page_writes = off
synchronous_commit = off
max_connections = 200
CONF
if ! $AS "$PGBIN/pg_ctl" -D "$TMP/data" -l "$TMP/server.log" -w start >/dev/null 2>&1; then
  cat "$TMP/server.log"; echo "0 passed, 1 failed"; exit 1
fi

# The specs set what they need; nothing of the caller's environment may
# answer a prompt (YES), change a default (FORCE, CASCADE, ...) or a zone.
unset DATABASE_URL PGSERVICE PGHOSTADDR PGPASSWORD PGOPTIONS PGSSLMODE PGCONNECT_TIMEOUT
unset YES FORCE CASCADE ROW_COUNT_STRATEGY MATVIEWS_YES MATVIEWS_FORCE MATVIEWS_CASCADE MATVIEWS_ROW_COUNT_STRATEGY PGTZ TZ MATVIEWS_LUA_DIR MATVIEWS_PG_BINDIR MATVIEWS_CHILD_DSN MATVIEWS_HISTORY
export PGHOST="$TMP" PGPORT="$PORT" PGUSER=postgres PGDATABASE=postgres
export MATVIEWS_SPEC_TMP="$TMP" MATVIEWS_SPEC_PGBIN="$PGBIN"
export MATVIEWS_HOME="$TMP/embedded"
# Sanitizer reports of every process (specs run the host as subprocesses too)
# go to files, so none is missed: any file there fails the run.
mkdir -p "$TMP/sanitizer" && chmod 777 "$TMP/sanitizer"
export ASAN_OPTIONS="detect_leaks=1:exitcode=23:log_path=$TMP/sanitizer/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$TMP/sanitizer/ubsan"

total_passed=0
total_failed=0
for BIN in $BINS; do
  echo "== specs with $BIN"
  export MATVIEWS_BIN="$BIN"
  { busted --lua="$BIN" "$@" 2>&1; echo $? >"$TMP/rc"; } | tee "$OUT"
  rc=$(cat "$TMP/rc")
  summary=$(grep -aE '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$OUT" | tail -n 1)
  if [ -z "$summary" ]; then
    echo "spec run with $BIN did not complete (exit $rc)"
    total_failed=$((total_failed + 1))
    continue
  fi
  passed=$(echo "$summary" | sed -E 's/^[^0-9]*([0-9]+) success.*/\1/')
  failures=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures? .*/\1/')
  errors=$(echo "$summary" | sed -E 's/.* ([0-9]+) errors? .*/\1/')
  pending=$(echo "$summary" | sed -E 's/.* ([0-9]+) pending.*/\1/')
  # A pending spec asserted nothing: it counts as a failure, so a missing
  # feature or tool cannot turn a spec green by skipping it.
  failed=$((failures + errors + pending))
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then
    echo "busted with $BIN exited $rc after its summary (a sanitizer report?)"
    failed=1
  fi
  reports=$(ls "$TMP/sanitizer" 2>/dev/null | wc -l)
  if [ "$reports" != 0 ]; then
    echo "sanitizer reports with $BIN:"
    cat "$TMP"/sanitizer/*
    rm -f "$TMP"/sanitizer/*
    failed=$((failed + reports))
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
done
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
