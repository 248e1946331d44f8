#!/bin/sh
# Benchmark: resident memory of one long-running `worker` as it works
# through queued jobs. VmRSS is sampled from /proc after 1,000 jobs and
# again after JOBS (default 10,000): a worker that kept something per job
# grows between the two. Prints both figures and their difference per job.
# Usage: sh bench/worker_rss.sh [JOBS]
. bench/lib.sh
JOBS=${1:-10000}
bench_start
machine
q <<SQL
CREATE MATERIALIZED VIEW wr_mv AS SELECT 1 AS x;
INSERT INTO mat_view_definitions (name, sql) VALUES ('wr_mv', 'SELECT 1 AS x');
INSERT INTO matviews_jobs (op, mat_view_definition_id, options)
  SELECT 'refresh', (SELECT id FROM mat_view_definitions WHERE name = 'wr_mv'), '{}'::jsonb
  FROM generate_series(1, $JOBS);
SQL

# The worker polls (no --once), so it stays alive once the queue is empty.
"$MATVIEWS" worker --poll-ms 200 >/dev/null 2>&1 &
pid=$!
# Waits until at most $1 jobs are left pending, then prints VmRSS in kB.
rss_when_left() {
  while [ "$(q -At -c "SELECT count(*) FROM matviews_jobs WHERE status = 0")" -gt "$1" ]; do sleep 0.5; done
  awk '/VmRSS/ { print $2 }' "/proc/$pid/status"
}
a=$(rss_when_left $((JOBS - 1000)))
b=$(rss_when_left 0)
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "worker VmRSS after 1000 jobs: $a kB"
echo "worker VmRSS after $JOBS jobs: $b kB"
echo "growth per job over the last $((JOBS - 1000)): $(awk -v a="$a" -v b="$b" -v n=$((JOBS - 1000)) 'BEGIN { printf "%.3f", (b - a) / n }') kB"
