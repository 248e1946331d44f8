# Shared by the bench/ scripts (sourced, not run): a throwaway PostgreSQL
# cluster of its own (socket only, port 55433, under /tmp), removed on exit,
# with PGHOST/PGPORT/PGUSER/PGDATABASE exported so psql, pgbench and
# matviews all reach it; plus small helpers. Run the scripts from the
# repository root after `make` and `make bench-deps`.
set -eu
PGBIN=$(pg_config --bindir)
MATVIEWS=${MATVIEWS:-$(pwd)/matviews}
BENCH_PORT=${BENCH_PORT:-55433}
BENCH_TMP=$(mktemp -d /tmp/matviews-bench.XXXXXX)
chmod 755 "$BENCH_TMP"
AS=""
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; chown postgres "$BENCH_TMP"; fi

for tool in hyperfine "$PGBIN/pgbench" psql; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing $tool: run make bench-deps" >&2; exit 2; }
done
[ -x "$MATVIEWS" ] || { echo "no $MATVIEWS: run make first" >&2; exit 2; }

bench_cleanup() {
  $AS "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Starts the cluster: default settings but for the socket, the port and
# shared_buffers (256MB, so the 1,000,000-row views are read from memory).
bench_start() {
  $AS "$PGBIN/initdb" -D "$BENCH_TMP/data" -U postgres -A trust -E UTF8 >"$BENCH_TMP/initdb.log" 2>&1
  cat >>"$BENCH_TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$BENCH_TMP'
port = $BENCH_PORT
$( [ "${BENCH_SHARED_BUFFERS:-256MB}" = default ] || echo "shared_buffers = ${BENCH_SHARED_BUFFERS:-256MB}" )
max_connections = 50
CONF
  $AS "$PGBIN/pg_ctl" -D "$BENCH_TMP/data" -l "$BENCH_TMP/server.log" -w start >/dev/null
  unset DATABASE_URL PGSERVICE PGHOSTADDR PGPASSWORD
  export PGHOST="$BENCH_TMP" PGPORT="$BENCH_PORT" PGUSER=postgres PGDATABASE=postgres
  "$MATVIEWS" init >/dev/null
}

# psql, quiet, stopping at the first error.
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# In database DB: a 10-row table src (id 1..10) and N materialized views
# v_1..v_N of SQL over it (WITH NO DATA, a unique index on id each) with
# their definitions (regular refresh). Usage: many_views DB N SQL
many_views() {
  q -d "$1" <<SQL
CREATE TABLE src AS SELECT g AS id FROM generate_series(1, 10) g;
DO \$\$ BEGIN
  FOR i IN 1..$2 LOOP
    EXECUTE format('CREATE MATERIALIZED VIEW %I AS $3 WITH NO DATA', 'v_' || i);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (id)', 'v_' || i);
  END LOOP;
END \$\$;
INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns)
  SELECT 'v_' || i, '$3', 0, '["id"]' FROM generate_series(1, $2) i;
SQL
}

# Saves a definition in the catalog: name, sql, strategy (0/1/2), unique column.
define() {
  q -c "INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns)
        VALUES ('$1', \$\$$2\$\$, $3, '[\"$4\"]')
        ON CONFLICT (schema_name, name) DO UPDATE SET sql = excluded.sql, refresh_strategy = excluded.refresh_strategy"
}

# Prints "p99 p99.9 max count" (ms) of the latencies in the pgbench logs $1.*
latencies() {
  cat "$1".* | awk '{ print $3 / 1000 }' | sort -n | awk '
    function at(q) { i = int(NR * q); return v[i < 1 ? 1 : i] }
    { v[NR] = $1 } END { printf "%.2f %.2f %.2f %d\n", at(0.99), at(0.999), v[NR], NR }'
}

# Makes the server log every lock wait of 10 ms or more ("still waiting"),
# so a round can say whether any reader waited on a lock that long.
log_lock_waits() {
  q -c "ALTER SYSTEM SET log_lock_waits = on" -c "ALTER SYSTEM SET deadlock_timeout = '10ms'" \
    -c "SELECT pg_reload_conf()" >/dev/null
}

# The 1,000,000-row source table the reader benchmarks read through views:
# big_src (id primary key, k in 0..99, v in 0..999).
big_source() {
  q -c "CREATE TABLE big_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v FROM generate_series(1, 1000000) g" \
    -c "ALTER TABLE big_src ADD PRIMARY KEY (id)"
}

# Prints the machine: CPU model, cores, memory, kernel, PostgreSQL version.
machine() {
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
  echo "server:  $(q -At -c 'SELECT version()' | cut -d, -f1)"
}

# Interleaved timing of two commands: ROUNDS rounds (after WARMUP untimed
# ones), each one hyperfine run of both (-N, no shell), the order swapped
# every round so neither command always runs first; then bench/interleave.lua
# prints each command's figures and the ratio first/second.
# Usage: interleaved LABEL ROUNDS WARMUP "command A" "command B"
interleaved() {
  label=$1 rounds=$2 warm=$3 a=$4 b=$5 i=1
  mkdir -p "$BENCH_TMP/rounds" && rm -f "$BENCH_TMP"/rounds/*
  while [ "$i" -le $(( warm + rounds )) ]; do
    out=/dev/null
    [ "$i" -gt "$warm" ] && out="$BENCH_TMP/rounds/$i.json"
    if [ $(( i % 2 )) = 1 ]; then set -- "$a" "$b"; else set -- "$b" "$a"; fi
    hyperfine -N --runs 1 --style none --export-json "$out" "$1" "$2" >/dev/null
    i=$(( i + 1 ))
  done
  "$MATVIEWS" bench/interleave.lua "$label" "$a" "$BENCH_TMP"/rounds/*.json
}

# A database DB with N views v_1..v_N over a 10-row table, each with a
# unique index and a definition (regular refresh), refreshed once: KIND
# tiny (SELECT id) or sleep (an InitPlan that sleeps 20 ms, once per
# refresh). Usage: make_db DB N KIND
make_db() {
  db=$1 n=$2 kind=$3
  q -c "CREATE DATABASE $db"
  PGDATABASE=$db "$MATVIEWS" init >/dev/null
  if [ "$kind" = tiny ]; then sql="SELECT id FROM src"; else sql="SELECT id FROM src WHERE (SELECT pg_sleep(0.02)) IS NOT NULL"; fi
  many_views "$db" "$n" "$sql"
  PGDATABASE=$db "$MATVIEWS" refresh --all --yes >/dev/null
}

# The REFRESHes of views v_1..v_N of database DB as psql scripts:
# $BENCH_TMP/all.sql (all of them), half1.sql and half2.sql (every other
# one), and $BENCH_TMP/two_psql.sh, which runs the two halves in two psql
# sessions side by side. Usage: psql_refreshes DB N
psql_refreshes() {
  i=1; : >"$BENCH_TMP/all.sql"; : >"$BENCH_TMP/half1.sql"; : >"$BENCH_TMP/half2.sql"
  while [ $i -le "$2" ]; do
    echo "REFRESH MATERIALIZED VIEW v_$i;" >>"$BENCH_TMP/all.sql"
    echo "REFRESH MATERIALIZED VIEW v_$i;" >>"$BENCH_TMP/half$(( i % 2 + 1 )).sql"
    i=$(( i + 1 ))
  done
  cat >"$BENCH_TMP/two_psql.sh" <<EOS
psql -X -q -d $1 -f $BENCH_TMP/half1.sql & psql -X -q -d $1 -f $BENCH_TMP/half2.sql; wait
EOS
}

# Lets the cluster settle before anything is timed: VACUUM ANALYZE of each
# database of DBS (autovacuum may still be at work on the views just made),
# a CHECKPOINT, then ROUNDS untimed runs of each command (in one run, psql's
# first timed figure without this took 18 to 34 % longer than the same psql
# later on). Usage: settle ROUNDS "DB..." COMMAND...
settle() {
  rounds=$1 dbs=$2
  shift 2
  for db in $dbs; do q -d "$db" -c "VACUUM ANALYZE"; done
  q -c "CHECKPOINT"
  i=1
  while [ "$i" -le "$rounds" ]; do
    for cmd in "$@"; do sh -c "$cmd" >/dev/null; done
    i=$(( i + 1 ))
  done
}
