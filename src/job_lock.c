/*
 * job_lock.c: the per-view advisory lock a job holds on the recorder while
 * its service runs, so that one view runs one job at a time on every
 * machine. It owns the lock key, the wait (lock_timeout on the recorder,
 * restored to spec.record_timeout_ms after) and the message naming who
 * holds the lock ("already running in pid P on HOST").
 *
 * Memory: every PGresult is cleared before the function returns; messages
 * are written into the caller's buffer.
 */
#include <stdio.h>
#include <string.h>
#include "job.h"
#include "pg.h"

/* The advisory lock key of a view: the same on every machine; the schema
 * is part of it, so a.mv_x and b.mv_x do not wait for each other. */
#define LOCK_KEY "hashtextextended('matviews:' || $2 || '.' || $1, 0)"

/* Writes the "already running" message naming who holds the view's lock:
 * pid and host of the running run whose recorder holds it. */
static void describe_holder(Job *job, char *err, size_t errlen) {
  const char *vals[2] = {job->name, job->schema};
  PGresult *res = pg_exec(job->rec,
    "SELECT r.process_pid, r.hostname, r.op, l.pid FROM pg_locks l LEFT JOIN LATERAL ("
    " SELECT op, process_pid, hostname, started_at FROM ("
    "  SELECT 'create' AS op, process_pid, hostname, started_at, backend_pid, status FROM mat_view_create_runs"
    "  UNION ALL SELECT 'refresh', process_pid, hostname, started_at, backend_pid, status FROM mat_view_refresh_runs"
    "  UNION ALL SELECT 'delete', process_pid, hostname, started_at, backend_pid, status FROM mat_view_delete_runs) x"
    " WHERE x.status = 1 AND x.backend_pid = l.pid ORDER BY started_at DESC LIMIT 1) r ON true"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid()"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = " LOCK_KEY " LIMIT 1", 2, vals);
  if (pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0))
    snprintf(err, errlen, "%s: %s already running in pid %s on %s", job->name,
             pg_value(res, 0, 2), pg_value(res, 0, 0), pg_value(res, 0, 1) ? pg_value(res, 0, 1) : "?");
  else if (pg_ok(res) && pg_nrows(res) == 1)
    snprintf(err, errlen, "%s: already locked by backend pid %s (not a recorded run)", job->name,
             pg_value(res, 0, 3));
  else
    snprintf(err, errlen, "%s: already running elsewhere (waited %.0f ms)", job->name, job->lock_wait_ms);
  pg_clear(res);
}

/* Takes the view's advisory lock on the recorder, waiting up to wait_ms
 * (lock_timeout); 0 means do not wait. Returns 1, or 0 with err set. */
int job_lock_view(Job *job, long long wait_ms, char *err, size_t errlen) {
  char ms[32], state[8] = "";
  const char *vals[2] = {job->name, job->schema};
  const char *tv[1] = {ms};
  double t = job_now_ms();
  int ok;
  if (wait_ms <= 0) {
    PGresult *res = pg_exec(job->rec, "SELECT pg_try_advisory_lock(" LOCK_KEY ")", 2, vals);
    ok = pg_ok(res) && strcmp(pg_value(res, 0, 0), "t") == 0;
    if (!pg_ok(res)) snprintf(err, errlen, "%s", pg_errmsg(job->rec, res));
    else if (!ok) snprintf(state, sizeof state, "%s", SQLSTATE_LOCK_NOT_AVAILABLE);
    pg_clear(res);
  } else {
    snprintf(ms, sizeof ms, "%lldms", wait_ms);
    job_exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
    ok = job_exec_simple(job->rec, "SELECT pg_advisory_lock(" LOCK_KEY ")", 2, vals, err, errlen, state);
    tv[0] = job->record_timeout;
    job_exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
  }
  job->lock_wait_ms = job_now_ms() - t;
  if (!ok && strcmp(state, SQLSTATE_LOCK_NOT_AVAILABLE) == 0) describe_holder(job, err, errlen);
  return ok;
}

/* Releases the view's advisory lock. */
void job_unlock_view(Job *job) {
  const char *vals[2] = {job->name, job->schema};
  job_exec_simple(job->rec, "SELECT pg_advisory_unlock(" LOCK_KEY ")", 2, vals, NULL, 0, NULL);
}
