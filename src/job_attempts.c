/*
 * job_attempts.c: one attempt of a job and its retries. An attempt sets
 * lock_timeout and statement_timeout on the service session and restores
 * them after, calls mv.services.<name> in protected mode (an error becomes
 * an error response), and is recorded in meta.attempts with its window.
 * A transient failure (lock not available, deadlock, serialization failure,
 * a lost connection on refresh) is retried after a backoff with jitter,
 * reconnecting through spec.reconnect after a lost connection.
 *
 * Memory: every PGresult is cleared before anything may raise; the saved
 * timeouts are copies in fixed buffers. Responses and attempt records are
 * Lua values: the last response in SLOT_RESP, records in SLOT_ATTEMPTS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "job.h"
#include "pg.h"
#include "lconn.h"
#include "errors.h"
#include "interrupt.h"

#define SQLSTATE_DEADLOCK_DETECTED   "40P01"
#define SQLSTATE_SERIALIZATION_FAIL  "40001"

/* The wall clock as ISO 8601 UTC with microseconds (attempt windows). */
static void iso_now(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* Pushes a service-shaped error response {status="error", success=false,
 * view, error={message, sqlstate}}; raised marks an exception. */
void job_push_error_response(lua_State *L, Job *job, const char *msg, const char *sqlstate, int raised) {
  lua_createtable(L, 0, 5);
  lua_pushliteral(L, "error"); lua_setfield(L, -2, "status");
  lua_pushboolean(L, 0); lua_setfield(L, -2, "success");
  lua_pushstring(L, job->name); lua_setfield(L, -2, "view");
  mv_error_push(L, msg, sqlstate && *sqlstate ? sqlstate : NULL);
  lua_setfield(L, -2, "error");
  if (raised) { lua_pushboolean(L, 1); lua_setfield(L, -2, "raised"); }
}

/* Pushes the service function mv.services[job->service], or nil. */
static void push_service(lua_State *L, Job *job) {
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "matviews");
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) lua_getfield(L, -1, "services");
  else lua_pushnil(L);
  lua_remove(L, -2);
  if (lua_type(L, -1) == LUA_TTABLE) lua_getfield(L, -1, job->service);
  else lua_pushnil(L);
  lua_remove(L, -2);
}

/* Turns the error value at the top into an error response (replacing it). */
static void error_to_response(lua_State *L, Job *job) {
  const char *msg, *st = NULL;
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_getfield(L, -1, "message");
    lua_getfield(L, -2, "sqlstate");
    st = lua_tostring(L, -1);
    msg = lua_tostring(L, -2);
  } else {
    msg = luaL_tolstring(L, -1, NULL);
    lua_pushnil(L);
  }
  job_push_error_response(L, job, msg ? msg : "the service raised an error", st, 1);
  lua_replace(L, -4);                             /* [resp msg st] */
  lua_pop(L, 2);
}

/* Sets (restore = 0) or restores (restore = 1) lock_timeout and
 * statement_timeout of the service session. saved holds the previous pair.
 * Returns 1, or 0 with err and state set. */
static int service_timeouts(Job *job, PGconn *svc, char saved[2][32], int restore,
                            char *err, size_t errlen, char *state) {
  static const char *set = "SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', $2, false)";
  if (restore) {
    const char *v[2] = {saved[0], saved[1]};
    return job_exec_simple(svc, set, 2, v, NULL, 0, NULL);
  }
  PGresult *res = pg_exec(svc, "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')", 0, NULL);
  int ok = pg_ok(res);
  if (ok) {
    snprintf(saved[0], 32, "%s", pg_value(res, 0, 0));
    snprintf(saved[1], 32, "%s", pg_value(res, 0, 1));
  } else {
    snprintf(err, errlen, "%s", pg_errmsg(svc, res));
    snprintf(state, 8, "%s", pg_sqlstate(res) ? pg_sqlstate(res) : "");
  }
  pg_clear(res);
  /* no statement_timeout of the definition or configuration: set back the
   * session's own, so a database or role setting stays in force */
  const char *v[2] = {job->lock_timeout, job->statement_timeout[0] ? job->statement_timeout : saved[1]};
  return ok && job_exec_simple(svc, set, 2, v, err, errlen, state);
}

/* One attempt: timeouts on, service called protected, timeouts restored.
 * Pushes the response (a table, always). */
static void call_service(lua_State *L, Job *job) {
  char saved[2][32], err[1024] = "", state[8] = "";
  lua_getfield(L, SLOT_OPTS, "conn");
  PGconn *svc = mv_toconn(L, -1);
  lua_pop(L, 1);
  if (job->corrupt[0]) {
    job_push_error_response(L, job, job->corrupt, NULL, 1);
    return;
  }
  if (svc == NULL) {
    job_push_error_response(L, job, "the service connection is closed", NULL, 0);
    return;
  }
  if (!service_timeouts(job, svc, saved, 0, err, sizeof err, state)) {
    job_push_error_response(L, job, err, state, 0);
    return;
  }
  push_service(L, job);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "service mv.services.%s is not available", job->service);
    job_push_error_response(L, job, lua_tostring(L, -1), NULL, 1);
    lua_remove(L, -2);
  } else {
    lua_pushinteger(L, (lua_Integer)job->defn_id);  /* the row itself, whatever its name */
    lua_pushvalue(L, SLOT_OPTS);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) error_to_response(L, job);
    else if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      job_push_error_response(L, job, "the service returned no response table", NULL, 1);
    }
  }
  if (pg_connected(svc)) service_timeouts(job, svc, saved, 1, NULL, 0, NULL);
}

/* Why the response at the top may be retried: the reason, or NULL. */
static const char *retry_reason(lua_State *L, Job *job) {
  const char *reason = NULL;
  lua_getfield(L, -1, "success");
  int ok = lua_toboolean(L, -1);
  lua_getfield(L, -2, "raised");
  int raised = lua_toboolean(L, -1);
  lua_getfield(L, -3, "error");
  const char *st = NULL;
  if (lua_istable(L, -1)) { lua_getfield(L, -1, "sqlstate"); st = lua_tostring(L, -1); lua_pop(L, 1); }
  if (!ok && !raised) {
    lua_getfield(L, SLOT_OPTS, "conn");
    PGconn *svc = mv_toconn(L, -1);
    lua_pop(L, 1);
    if (st && strcmp(st, SQLSTATE_LOCK_NOT_AVAILABLE) == 0) reason = "lock_not_available";
    else if (st && strcmp(st, SQLSTATE_DEADLOCK_DETECTED) == 0) reason = "deadlock_detected";
    else if (st && strcmp(st, SQLSTATE_SERIALIZATION_FAIL) == 0) reason = "serialization_failure";
    else if (svc && !pg_connected(svc) && strcmp(job->op, "refresh") == 0) reason = "connection_lost";
  }
  lua_pop(L, 3);
  return reason;
}

/* The backoff before attempt n+1: min(max, base * 2^(n-1)), with jitter
 * drawn from its upper half. */
static long backoff_ms(lua_State *L, int n) {
  static unsigned int seed = 0;
  lua_getfield(L, SLOT_SPEC, "retry");
  int has = lua_istable(L, -1);
  long base = has ? (long)job_opt_int(L, -1, "base_ms", 200) : 200;
  long max = has ? (long)job_opt_int(L, -1, "max_ms", 5000) : 5000;
  lua_pop(L, 1);
  if (seed == 0) seed = (unsigned int)getpid() ^ (unsigned int)job_now_ms();
  double d = (double)base;
  for (int i = 1; i < n && d < (double)max; i++) d *= 2;
  if (d > (double)max) d = (double)max;
  long half = (long)(d / 2);
  return half + (half > 0 ? (long)(rand_r(&seed) % (half + 1)) : 0);
}

/* Sleeps ms unless SIGINT arrives; returns 0 when interrupted. */
static int backoff_sleep(long ms) {
  double until = job_now_ms() + (double)ms;
  while (!mv_query_interrupted()) {
    double left = until - job_now_ms();
    if (left <= 0) return 1;
    struct timespec ts = { (time_t)(left / 1000), (long)((left - (double)(time_t)(left / 1000) * 1000) * 1e6) };
    if (nanosleep(&ts, NULL) != 0 && errno != EINTR) return 1;
  }
  return 0;
}

/* After a lost connection: spec.reconnect(old) gives the service a new
 * connection (opts.conn). Returns 1, or 0 with its error in the attempt. */
static int reconnect(lua_State *L) {
  lua_getfield(L, SLOT_SPEC, "reconnect");
  if (!lua_isfunction(L, -1)) { lua_pop(L, 1); return 0; }
  lua_getfield(L, SLOT_OPTS, "conn");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || luaL_testudata(L, -1, MV_CONN_MT) == NULL) {
    if (lua_type(L, -1) == LUA_TTABLE) lua_getfield(L, -1, "message");
    else lua_pushvalue(L, -1);
    lua_setfield(L, -3, "reconnect_error");       /* attempt record is below */
    lua_pop(L, 1);
    return 0;
  }
  lua_setfield(L, SLOT_OPTS, "conn");
  return 1;
}

/* Pushes the record of one attempt: {attempt, status, error, duration_ms,
 * started_at, finished_at}. */
static void push_attempt(lua_State *L, int n, double ms, const char *started) {
  char finished[40];
  iso_now(finished, sizeof finished);
  lua_createtable(L, 0, 8);                       /* [resp rec] */
  lua_pushstring(L, started); lua_setfield(L, -2, "started_at");
  lua_pushstring(L, finished); lua_setfield(L, -2, "finished_at");
  lua_pushinteger(L, n); lua_setfield(L, -2, "attempt");
  lua_getfield(L, -2, "status"); lua_setfield(L, -2, "status");
  lua_getfield(L, -2, "error");
  job_push_jsonable(L, -1, 0);
  lua_setfield(L, -3, "error");
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)(ms + 0.5)); lua_setfield(L, -2, "duration_ms");
}

/* Calls the service until it succeeds, fails for good, or attempts run out;
 * records each attempt in SLOT_ATTEMPTS; leaves the last response in
 * SLOT_RESP. */
void job_run_attempts(lua_State *L, Job *job) {
  int attempts = 3;
  lua_getfield(L, SLOT_SPEC, "retry");
  if (lua_istable(L, -1)) attempts = (int)job_opt_int(L, -1, "attempts", 3);
  lua_pop(L, 1);
  if (attempts < 1) attempts = 1;
  for (int n = 1;; n++) {
    char started[40];
    iso_now(started, sizeof started);
    double t = job_now_ms();
    call_service(L, job);                         /* [resp] */
    push_attempt(L, n, job_now_ms() - t, started);    /* [resp rec] */
    lua_pushvalue(L, -1);
    lua_rawseti(L, SLOT_ATTEMPTS, n);
    lua_insert(L, -2);                            /* [rec resp] */
    const char *why = retry_reason(L, job);
    lua_replace(L, SLOT_RESP);                    /* [rec] */
    if (why == NULL || n >= attempts) { lua_pop(L, 1); return; }
    long wait = backoff_ms(L, n);
    lua_pushstring(L, why); lua_setfield(L, -2, "retry_reason");
    lua_pushinteger(L, wait); lua_setfield(L, -2, "retry_in_ms");
    if (!backoff_sleep(wait)) { lua_pop(L, 1); return; }
    if (strcmp(why, "connection_lost") == 0 && !reconnect(L)) { lua_pop(L, 1); return; }
    lua_pop(L, 1);
  }
}
