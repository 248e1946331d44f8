#!/bin/sh
# The cost of routing the built-in strategies through the strategy table
# (matviews.strategies), side by side in one process: each round refreshes
# three views (regular, concurrent, swap) by calling their service directly
# and through the table as a refresh job does (the strategy looked up, its
# context made, its function called protected, the context closed), the
# order swapped every round. Prints per strategy the mean of each way and
# the ratio table / direct. Prints figures; asserts nothing.
# Usage: sh bench/strategy_table.sh [ROUNDS]
. bench/lib.sh
ROUNDS=${1:-200}
bench_start
machine
q <<'SQL'
CREATE TABLE st_src AS SELECT g AS id, g % 100 AS k, (g * 7) % 1000 AS v FROM generate_series(1, 10000) g;
CREATE MATERIALIZED VIEW st_regular AS SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k;
CREATE MATERIALIZED VIEW st_concurrent AS SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k;
CREATE UNIQUE INDEX ON st_concurrent (k);
CREATE MATERIALIZED VIEW st_swap AS SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k;
CREATE UNIQUE INDEX ON st_swap (k);
VACUUM ANALYZE;
SQL
define st_regular 'SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k' 0 k
define st_concurrent 'SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k' 1 k
define st_swap 'SELECT k, count(*) AS n, sum(v) AS total FROM st_src GROUP BY k' 2 k
"$MATVIEWS" bench/strategy_table.lua "$ROUNDS"
echo "load: $(uptime | sed 's/.*load/load/')"
