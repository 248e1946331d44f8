/*
 * jobs.c: jobs and run recording (core.jobs.run). A job resolves its
 * definition, inserts a run row (status 1 running, started_at, backend_pid,
 * hostname, process_pid), takes the view's advisory lock, calls the service
 * mv.services.<name> through Lua in protected mode (retrying transient
 * failures with backoff), and finalises the row: status 2 success or 3
 * failed, finished_at, duration_ms from CLOCK_MONOTONIC, meta, error and, on
 * refresh, rows_count. It returns the finalised run as a table.
 *
 * Writing a run row waits at most spec.record_timeout_ms for locks on the
 * run tables (lock_timeout on the recorder); a run that cannot be finalised
 * has its outcome (op, view, status, duration, error) written on stderr
 * before the error is raised, so it is not lost.
 *
 * Two connections. The recorder (spec.run_conn) is matviews's own: it writes
 * the run rows and holds the advisory lock, so a row is finalised whatever
 * happens to the service's session (an error, a cancel, a lost connection, a
 * user's transaction). backend_pid is the recorder's: it holds the lock and
 * dies with the process, which is what orphan detection needs. The service
 * connection (spec.options.conn) is the caller's; the job sets lock_timeout
 * and statement_timeout on it for each attempt and restores them after.
 *
 * Memory: every PGresult is cleared before anything may raise; texts kept in
 * the Job are copies in fixed buffers. Lua values live at fixed stack slots
 * of l_run (see SLOT_*).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"
#include "pg.h"
#include "lconn.h"
#include "errors.h"
#include "interrupt.h"

#define SQLSTATE_DEADLOCK_DETECTED   "40P01"
#define SQLSTATE_SERIALIZATION_FAIL  "40001"

#define STATUS_RUNNING 1
#define STATUS_SUCCESS 2
#define STATUS_FAILED  3

/* Stack slots of l_run. */
#define SLOT_SPEC     1   /* the job spec (argument) */
#define SLOT_OPTS     2   /* options passed to the service (conn set) */
#define SLOT_META     3   /* the run's meta */
#define SLOT_ATTEMPTS 4   /* meta.attempts */
#define SLOT_RESP     5   /* the final service response */

/* The advisory lock key of a view: the same on every machine. */
#define LOCK_KEY "hashtextextended('matviews:' || $1, 0)"

typedef struct {
  const char *op;              /* "create" | "refresh" | "delete" */
  const char *table;           /* its run table */
  PGconn *rec;                 /* the recorder connection */
  long long defn_id;
  char name[256];              /* definition name */
  const char *strategy;        /* "regular" | "concurrent" | "swap"; NULL: corrupt */
  char corrupt[400];           /* why the definition row is unusable, "" if it is not */
  char service[32];            /* mv.services.<service> */
  char lock_timeout[32];       /* e.g. "5000ms", for the service session */
  char statement_timeout[32];
  char row_count[16];          /* the definition's row count strategy, "" if none */
  char record_timeout[32];     /* lock_timeout of the recorder, e.g. "10000ms" */
  long long run_id;
  double t0;                   /* monotonic ms when the run started */
  double lock_wait_ms;
  char hostname[256];
} Job;

static const char *const RUN_TABLES[][2] = {
  {"create", "mat_view_create_runs"},
  {"refresh", "mat_view_refresh_runs"},
  {"delete", "mat_view_delete_runs"},
};
static const char *const STRATEGIES[] = {"regular", "concurrent", "swap"};

/* CLOCK_MONOTONIC in milliseconds. */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* The wall clock as ISO 8601 UTC with microseconds (attempt windows). */
static void iso_now(char *buf, size_t len) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

/* Integer field of the table at idx, or def when absent. */
static long long opt_int(lua_State *L, int idx, const char *key, long long def) {
  lua_getfield(L, idx, key);
  long long v = lua_isnumber(L, -1) ? (long long)lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* Raises a matviews error with msg; nothing may be owned by C here. */
static int raise_msg(lua_State *L, const char *msg, const char *sqlstate) {
  mv_error_push(L, msg, sqlstate);
  return lua_error(L);
}

/* Raises the error of a failed result after clearing it. */
static int raise_result(lua_State *L, PGconn *conn, PGresult *res, const char *prefix) {
  char msg[1200];
  const char *st = pg_sqlstate(res);
  char state[8] = "";
  if (st) snprintf(state, sizeof state, "%s", st);
  snprintf(msg, sizeof msg, "%s%s", prefix, pg_errmsg(conn, res));
  pg_clear(res);
  size_t n = strlen(msg);
  while (n > 0 && msg[n - 1] == '\n') msg[--n] = '\0';
  return raise_msg(L, msg, state[0] ? state : NULL);
}

/* Copies the definition's row (id, name, strategy, timeouts) into job. */
static void read_definition(Job *job, PGresult *res, long long def_lock, long long def_stmt) {
  job->defn_id = strtoll(pg_value(res, 0, 0), NULL, 10);
  snprintf(job->name, sizeof job->name, "%s", pg_value(res, 0, 1));
  int s = atoi(pg_value(res, 0, 2));
  job->strategy = s >= 0 && s <= 2 ? STRATEGIES[s] : NULL;
  if (job->strategy == NULL)
    snprintf(job->corrupt, sizeof job->corrupt, "definition %lld \"%.200s\" in mat_view_definitions is corrupt:"
             " unknown refresh_strategy %d (0 regular, 1 concurrent, 2 swap)", job->defn_id, job->name, s);
  long long lt = pg_value(res, 0, 3) ? strtoll(pg_value(res, 0, 3), NULL, 10) : def_lock;
  long long st = pg_value(res, 0, 4) ? strtoll(pg_value(res, 0, 4), NULL, 10) : def_stmt;
  snprintf(job->lock_timeout, sizeof job->lock_timeout, "%lldms", lt < 0 ? 0 : lt);
  snprintf(job->statement_timeout, sizeof job->statement_timeout, "%lldms", st < 0 ? 0 : st);
  snprintf(job->row_count, sizeof job->row_count, "%s", pg_value(res, 0, 5) ? pg_value(res, 0, 5) : "");
  if (strcmp(job->op, "refresh") == 0)
    snprintf(job->service, sizeof job->service, "%s_refresh", job->strategy ? job->strategy : "regular");
  else
    snprintf(job->service, sizeof job->service, "%s_view", job->op);
}

/* Looks up spec.definition (a name or an id) on the recorder; raises when
 * there is no such definition (a run row needs one). Timeouts and the row
 * count strategy: the job's option, else the definition's options, else the
 * configured default. */
static void resolve_definition(lua_State *L, Job *job) {
  char idbuf[32];
  const char *vals[2] = {NULL, NULL};
  lua_getfield(L, SLOT_SPEC, "definition");
  if (lua_isinteger(L, -1)) {
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)lua_tointeger(L, -1));
    vals[0] = idbuf;
  } else if (lua_type(L, -1) == LUA_TSTRING) {
    vals[1] = lua_tostring(L, -1);
  } else {
    luaL_error(L, "a job needs a definition name or id");
  }
  PGresult *res = pg_exec(job->rec,
      "SELECT id, name, refresh_strategy, options->>'lock_timeout_ms', options->>'statement_timeout_ms',"
      " options->>'row_count' FROM mat_view_definitions WHERE id = $1::bigint OR name = $2", 2, vals);
  if (!pg_ok(res)) {
    const char *st = pg_sqlstate(res);
    if (st && strcmp(st, SQLSTATE_UNDEFINED_TABLE) == 0) {
      pg_clear(res);
      raise_msg(L, "the matviews catalog is not installed (run `matviews init`)", SQLSTATE_UNDEFINED_TABLE);
    }
    raise_result(L, job->rec, res, "");
  }
  if (pg_nrows(res) == 0) {
    pg_clear(res);
    if (vals[0]) lua_pushfstring(L, "no definition with id %s", vals[0]);
    else lua_pushfstring(L, "no definition named \"%s\"", vals[1]);
    raise_msg(L, lua_tostring(L, -1), NULL);
  }
  read_definition(job, res, opt_int(L, SLOT_SPEC, "default_lock_timeout_ms", 5000),
                  opt_int(L, SLOT_SPEC, "default_statement_timeout_ms", 0));
  pg_clear(res);
  lua_pop(L, 1);
  long long lt = opt_int(L, SLOT_SPEC, "lock_timeout_ms", -1);
  long long st = opt_int(L, SLOT_SPEC, "statement_timeout_ms", -1);
  if (lt >= 0) snprintf(job->lock_timeout, sizeof job->lock_timeout, "%lldms", lt);
  if (st >= 0) snprintf(job->statement_timeout, sizeof job->statement_timeout, "%lldms", st);
}

/* Pushes a JSON-able copy of the value at idx (strings, numbers, booleans,
 * mv.null, tables of those); anything else becomes nil. */
static void push_jsonable(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: case LUA_TNUMBER: case LUA_TBOOLEAN:
    lua_pushvalue(L, idx);
    return;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) { lua_pushvalue(L, idx); return; }
    break;
  case LUA_TTABLE:
    if (depth > 16) break;
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {                    /* [copy key value] */
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING || kt == LUA_TNUMBER) {
        push_jsonable(L, -1, depth + 1);          /* [copy key value v'] */
        lua_pushvalue(L, -3);
        lua_insert(L, -2);                        /* [copy key value key v'] */
        lua_rawset(L, -5);                        /* [copy key value] */
      }
      lua_pop(L, 1);                              /* [copy key] */
    }
    return;
  default:
    break;
  }
  lua_pushnil(L);
}

/* Encodes the table at idx with cjson in protected mode; pushes the text,
 * or "{}" when it cannot be encoded. */
static const char *push_json(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, "matviews.json_encode");
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "{}");
  }
  return lua_tostring(L, -1);
}

/* Inserts the run row: running, started_at, who runs it, initial meta. */
static void insert_run(lua_State *L, Job *job) {
  static const char *fmt = "INSERT INTO %s (mat_view_definition_id, status, started_at, backend_pid,"
    " hostname, process_pid, meta, created_at, updated_at) VALUES ($1, 1, clock_timestamp(),"
    " pg_backend_pid(), $2, $3, $4::jsonb, clock_timestamp(), clock_timestamp()) RETURNING id";
  char sql[512], id[32], pid[32];
  snprintf(sql, sizeof sql, fmt, job->table);
  snprintf(id, sizeof id, "%lld", job->defn_id);
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  const char *vals[4] = {id, job->hostname, pid, push_json(L, SLOT_META)};
  PGresult *res = pg_exec(job->rec, sql, 4, vals);
  lua_pop(L, 1);
  if (!pg_ok(res)) raise_result(L, job->rec, res, "could not record the run: ");
  job->run_id = strtoll(pg_value(res, 0, 0), NULL, 10);
  pg_clear(res);
}

/* Runs one statement on conn with up to 2 parameters; on failure copies the
 * message into err (when err is not NULL). Returns 1 on success. */
static int exec_simple(PGconn *conn, const char *sql, int n, const char *const *vals,
                       char *err, size_t errlen, char *state) {
  PGresult *res = pg_exec(conn, sql, n, vals);
  int ok = pg_ok(res);
  if (!ok && err) snprintf(err, errlen, "%s", pg_errmsg(conn, res));
  if (!ok && state) snprintf(state, 8, "%s", pg_sqlstate(res) ? pg_sqlstate(res) : "");
  pg_clear(res);
  return ok;
}

/* Writes the "already running" message naming who holds the view's lock:
 * pid and host of the running run whose recorder holds it. */
static void describe_holder(Job *job, char *err, size_t errlen) {
  const char *vals[1] = {job->name};
  PGresult *res = pg_exec(job->rec,
    "SELECT r.process_pid, r.hostname, r.op, l.pid FROM pg_locks l LEFT JOIN LATERAL ("
    " SELECT op, process_pid, hostname, started_at FROM ("
    "  SELECT 'create' AS op, process_pid, hostname, started_at, backend_pid, status FROM mat_view_create_runs"
    "  UNION ALL SELECT 'refresh', process_pid, hostname, started_at, backend_pid, status FROM mat_view_refresh_runs"
    "  UNION ALL SELECT 'delete', process_pid, hostname, started_at, backend_pid, status FROM mat_view_delete_runs) x"
    " WHERE x.status = 1 AND x.backend_pid = l.pid ORDER BY started_at DESC LIMIT 1) r ON true"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid()"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = " LOCK_KEY " LIMIT 1", 1, vals);
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
static int lock_view(Job *job, long long wait_ms, char *err, size_t errlen) {
  char ms[32], state[8] = "";
  const char *vals[1] = {job->name};
  const char *tv[1] = {ms};
  double t = now_ms();
  int ok;
  if (wait_ms <= 0) {
    PGresult *res = pg_exec(job->rec, "SELECT pg_try_advisory_lock(" LOCK_KEY ")", 1, vals);
    ok = pg_ok(res) && strcmp(pg_value(res, 0, 0), "t") == 0;
    if (!pg_ok(res)) snprintf(err, errlen, "%s", pg_errmsg(job->rec, res));
    else if (!ok) snprintf(state, sizeof state, "%s", SQLSTATE_LOCK_NOT_AVAILABLE);
    pg_clear(res);
  } else {
    snprintf(ms, sizeof ms, "%lldms", wait_ms);
    exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
    ok = exec_simple(job->rec, "SELECT pg_advisory_lock(" LOCK_KEY ")", 1, vals, err, errlen, state);
    tv[0] = job->record_timeout;
    exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
  }
  job->lock_wait_ms = now_ms() - t;
  if (!ok && strcmp(state, SQLSTATE_LOCK_NOT_AVAILABLE) == 0) describe_holder(job, err, errlen);
  return ok;
}

/* Releases the view's advisory lock. */
static void unlock_view(Job *job) {
  const char *vals[1] = {job->name};
  exec_simple(job->rec, "SELECT pg_advisory_unlock(" LOCK_KEY ")", 1, vals, NULL, 0, NULL);
}

/* Pushes a service-shaped error response {status="error", success=false,
 * view, error={message, sqlstate}}; raised marks an exception. */
static void push_error_response(lua_State *L, Job *job, const char *msg, const char *sqlstate, int raised) {
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
  push_error_response(L, job, msg ? msg : "the service raised an error", st, 1);
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
    return exec_simple(svc, set, 2, v, NULL, 0, NULL);
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
  const char *v[2] = {job->lock_timeout, job->statement_timeout};
  return ok && exec_simple(svc, set, 2, v, err, errlen, state);
}

/* One attempt: timeouts on, service called protected, timeouts restored.
 * Pushes the response (a table, always). */
static void call_service(lua_State *L, Job *job) {
  char saved[2][32], err[1024] = "", state[8] = "";
  lua_getfield(L, SLOT_OPTS, "conn");
  PGconn *svc = mv_toconn(L, -1);
  lua_pop(L, 1);
  if (job->corrupt[0]) {
    push_error_response(L, job, job->corrupt, NULL, 1);
    return;
  }
  if (svc == NULL) {
    push_error_response(L, job, "the service connection is closed", NULL, 0);
    return;
  }
  if (!service_timeouts(job, svc, saved, 0, err, sizeof err, state)) {
    push_error_response(L, job, err, state, 0);
    return;
  }
  push_service(L, job);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "service mv.services.%s is not available", job->service);
    push_error_response(L, job, lua_tostring(L, -1), NULL, 1);
    lua_remove(L, -2);
  } else {
    lua_pushinteger(L, (lua_Integer)job->defn_id);  /* the row itself, whatever its name */
    lua_pushvalue(L, SLOT_OPTS);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) error_to_response(L, job);
    else if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      push_error_response(L, job, "the service returned no response table", NULL, 1);
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
  long base = has ? (long)opt_int(L, -1, "base_ms", 200) : 200;
  long max = has ? (long)opt_int(L, -1, "max_ms", 5000) : 5000;
  lua_pop(L, 1);
  if (seed == 0) seed = (unsigned int)getpid() ^ (unsigned int)now_ms();
  double d = (double)base;
  for (int i = 1; i < n && d < (double)max; i++) d *= 2;
  if (d > (double)max) d = (double)max;
  long half = (long)(d / 2);
  return half + (half > 0 ? (long)(rand_r(&seed) % (half + 1)) : 0);
}

/* Sleeps ms unless SIGINT arrives; returns 0 when interrupted. */
static int backoff_sleep(long ms) {
  double until = now_ms() + (double)ms;
  while (!mv_query_interrupted()) {
    double left = until - now_ms();
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
  push_jsonable(L, -1, 0);
  lua_setfield(L, -3, "error");
  lua_pop(L, 1);
  lua_pushinteger(L, (lua_Integer)(ms + 0.5)); lua_setfield(L, -2, "duration_ms");
}

/* Calls the service until it succeeds, fails for good, or attempts run out;
 * records each attempt in SLOT_ATTEMPTS; leaves the last response in
 * SLOT_RESP. */
static void run_attempts(lua_State *L, Job *job) {
  int attempts = 3;
  lua_getfield(L, SLOT_SPEC, "retry");
  if (lua_istable(L, -1)) attempts = (int)opt_int(L, -1, "attempts", 3);
  lua_pop(L, 1);
  if (attempts < 1) attempts = 1;
  for (int n = 1;; n++) {
    char started[40];
    iso_now(started, sizeof started);
    double t = now_ms();
    call_service(L, job);                         /* [resp] */
    push_attempt(L, n, now_ms() - t, started);    /* [resp rec] */
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

/* meta[key] = jsonable(t[field]) for the table at idx. */
static void copy_field(lua_State *L, int idx, const char *field, const char *key) {
  if (!lua_istable(L, idx)) return;
  lua_getfield(L, idx, field);
  push_jsonable(L, -1, 0);
  lua_setfield(L, SLOT_META, key);
  lua_pop(L, 1);
}

/* Builds meta from the final response: the request's keys at top level
 * (row_count_strategy, force, cascade, if_exists, ...), view, strategy,
 * sql, lock_ms, row counts, plus request/response/error whole, the
 * attempts and the lock wait. */
static void build_meta(lua_State *L, Job *job) {
  lua_getfield(L, SLOT_RESP, "request");
  if (lua_istable(L, -1)) {
    push_jsonable(L, -1, 0);                      /* [req copy] */
    lua_pushnil(L);
    while (lua_next(L, -2)) {                     /* [req copy k v] */
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, SLOT_META);
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, SLOT_RESP, "response");         /* [req resp] */
  copy_field(L, -1, "sql", "sql");
  copy_field(L, -1, "lock_ms", "lock_ms");
  copy_field(L, -1, "row_count_before", "row_count_before");
  copy_field(L, -1, "row_count_after", "row_count_after");
  lua_pop(L, 2);
  copy_field(L, SLOT_RESP, "view", "view");
  copy_field(L, SLOT_RESP, "status", "service_status");
  copy_field(L, SLOT_RESP, "request", "request");
  copy_field(L, SLOT_RESP, "response", "response");
  copy_field(L, SLOT_RESP, "error", "error");
  lua_getfield(L, SLOT_META, "view");
  if (lua_isnil(L, -1)) { lua_pushstring(L, job->name); lua_setfield(L, SLOT_META, "view"); }
  lua_pop(L, 1);
  if (strcmp(job->op, "refresh") == 0) { lua_pushstring(L, job->strategy); lua_setfield(L, SLOT_META, "strategy"); }
  lua_pushvalue(L, SLOT_ATTEMPTS); lua_setfield(L, SLOT_META, "attempts");
  lua_pushinteger(L, (lua_Integer)(job->lock_wait_ms + 0.5)); lua_setfield(L, SLOT_META, "lock_wait_ms");
}

/* rows_count of a refresh: row_count_after when a count was asked. */
static int rows_count(lua_State *L, Job *job, char *buf, size_t len) {
  int have = 0;
  if (strcmp(job->op, "refresh") != 0) return 0;
  lua_getfield(L, SLOT_OPTS, "row_count_strategy");
  const char *rcs = lua_tostring(L, -1);
  lua_getfield(L, SLOT_META, "row_count_after");
  if (rcs && strcmp(rcs, "none") != 0 && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) {
    snprintf(buf, len, "%lld", (long long)lua_tointeger(L, -1));
    have = 1;
  }
  lua_pop(L, 2);
  return have;
}

/* The error text of the final response ("" when it succeeded). */
static void final_error(lua_State *L, char *err, size_t len) {
  err[0] = '\0';
  lua_getfield(L, SLOT_RESP, "success");
  int ok = lua_toboolean(L, -1);
  lua_getfield(L, SLOT_RESP, "error");
  if (!ok) {
    const char *m = NULL;
    if (lua_istable(L, -1)) { lua_getfield(L, -1, "message"); m = lua_tostring(L, -1); lua_pop(L, 1); }
    snprintf(err, len, "%s", m ? m : "the service failed");
  }
  lua_pop(L, 2);
}

/* Pushes the run table from the finalised row (res row 0). */
static void push_run(lua_State *L, Job *job, PGresult *res) {
  static const char *cols[] = {"started_at", "finished_at", "duration_ms", "rows_count", "error",
                               "backend_pid", "hostname", "process_pid", "status"};
  lua_createtable(L, 0, 16);
  lua_pushinteger(L, (lua_Integer)job->run_id); lua_setfield(L, -2, "id");
  lua_pushstring(L, job->op); lua_setfield(L, -2, "op");
  lua_pushinteger(L, (lua_Integer)job->defn_id); lua_setfield(L, -2, "mat_view_definition_id");
  lua_pushstring(L, job->name); lua_setfield(L, -2, "view");
  for (int c = 0; c < 9; c++) {
    const char *v = pg_value(res, 0, c);
    if (v == NULL) continue;
    if (c == 2 || c == 3 || c == 5 || c == 7) lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
    else if (c == 8) lua_pushstring(L, atoi(v) == STATUS_SUCCESS ? "success" : "failed");
    else lua_pushstring(L, v);
    lua_setfield(L, -2, cols[c]);
  }
  lua_pushvalue(L, SLOT_META); lua_setfield(L, -2, "meta");
}

/* Writes on stderr the outcome of a run whose row could not be finalised
 * (why: the error of the UPDATE), so that it is not lost. */
static void report_unrecorded(Job *job, const char *why, const char *status, const char *dur,
                              const char *err) {
  char line[1600];
  int wlen = (int)strlen(why);
  while (wlen > 0 && (why[wlen - 1] == '\n' || why[wlen - 1] == ' ')) wlen--;
  size_t n = (size_t)snprintf(line, sizeof line, "matviews: could not record the outcome of %s run %lld of %s (%.*s): %s in %s ms",
                              job->op, job->run_id, job->name, wlen, why, status, dur);
  if (err && n < sizeof line) snprintf(line + n, sizeof line - n, ": %s", err);
  for (char *p = line; *p; p++) if (*p == '\n') *p = ' ';
  fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

/* Finalises the run row (with SIGINT blocked, so nothing interrupts it) and
 * pushes the run table. Raises only when the row cannot be written. */
static void finalise(lua_State *L, Job *job, int *interrupted) {
  static const char *fmt = "UPDATE %s SET status = $2, finished_at = clock_timestamp(), duration_ms = $3,"
    " meta = $4::jsonb, error = $5, updated_at = clock_timestamp()%s WHERE id = $1 RETURNING"
    " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " duration_ms, %s, error, backend_pid, hostname, process_pid, status";
  int refresh = strcmp(job->op, "refresh") == 0;
  char sql[900], id[32], status[4], dur[32], rows[32], err[2048];
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  *interrupted = mv_interrupt_take(L);
  final_error(L, err, sizeof err);
  int has_rows = rows_count(L, job, rows, sizeof rows);
  snprintf(sql, sizeof sql, fmt, job->table, refresh ? ", rows_count = $6::integer" : "",
           refresh ? "rows_count" : "NULL::integer");
  snprintf(id, sizeof id, "%lld", job->run_id);
  snprintf(status, sizeof status, "%d", err[0] ? STATUS_FAILED : STATUS_SUCCESS);
  snprintf(dur, sizeof dur, "%lld", (long long)(now_ms() - job->t0 + 0.5));
  const char *vals[6] = {id, status, dur, push_json(L, SLOT_META), err[0] ? err : NULL, has_rows ? rows : NULL};
  PGresult *res = pg_exec(job->rec, sql, refresh ? 6 : 5, vals);
  lua_pop(L, 1);
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (!pg_ok(res)) {
    report_unrecorded(job, pg_errmsg(job->rec, res), err[0] ? "failed" : "success", dur, vals[4]);
    snprintf(err, sizeof err, "could not finalise run %lld of %s: ", job->run_id, job->name);
    raise_result(L, job->rec, res, err);
  }
  push_run(L, job, res);
  pg_clear(res);
}

/* Fills job from the spec: op, its table, the recorder, the host name. */
static void job_init(lua_State *L, Job *job) {
  memset(job, 0, sizeof *job);
  luaL_checktype(L, SLOT_SPEC, LUA_TTABLE);
  lua_settop(L, SLOT_SPEC);
  lua_getfield(L, SLOT_SPEC, "op");
  const char *op = lua_tostring(L, -1);
  for (size_t i = 0; op && i < sizeof RUN_TABLES / sizeof RUN_TABLES[0]; i++)
    if (strcmp(op, RUN_TABLES[i][0]) == 0) { job->op = RUN_TABLES[i][0]; job->table = RUN_TABLES[i][1]; }
  if (job->op == NULL) luaL_error(L, "job op must be create, refresh or delete");
  lua_pop(L, 1);
  lua_getfield(L, SLOT_SPEC, "run_conn");
  job->rec = mv_checkconn(L, -1);
  lua_pop(L, 1);
  const char *tv[1] = {job->record_timeout};
  snprintf(job->record_timeout, sizeof job->record_timeout, "%lldms", opt_int(L, SLOT_SPEC, "record_timeout_ms", 10000));
  exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
  if (gethostname(job->hostname, sizeof job->hostname) != 0) job->hostname[0] = '\0';
  job->hostname[sizeof job->hostname - 1] = '\0';
}

/* Pushes the service options: a copy of spec.options with conn set to
 * spec.conn and row_count_strategy defaulted (definition, then
 * spec.default_row_count). */
static void push_options(lua_State *L, const Job *job) {
  lua_newtable(L);
  lua_getfield(L, SLOT_SPEC, "options");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {                     /* [opts src k v] */
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -5);
    }
  }
  lua_pop(L, 1);
  lua_getfield(L, SLOT_SPEC, "conn");
  mv_checkconn(L, -1);
  lua_setfield(L, -2, "conn");
  if (lua_getfield(L, -1, "row_count_strategy") == LUA_TNIL) {
    if (job->row_count[0]) lua_pushstring(L, job->row_count);
    else lua_getfield(L, SLOT_SPEC, "default_row_count");
    lua_setfield(L, -3, "row_count_strategy");
  }
  lua_pop(L, 1);
}

/* core.jobs.run(spec) -> run. spec: op, definition (name or id), run_conn
 * (recorder), conn (service connection), options (for the service),
 * lock_wait_ms, lock_timeout_ms, statement_timeout_ms (nil: definition's
 * options, else default_*), retry = {attempts, base_ms, max_ms}, reconnect
 * (function(old) -> conn). */
static int l_run(lua_State *L) {
  Job job;
  char err[1200];
  int interrupted = 0;
  job_init(L, &job);
  resolve_definition(L, &job);
  push_options(L, &job);                          /* SLOT_OPTS */
  lua_newtable(L);                                /* SLOT_META */
  lua_newtable(L);                                /* SLOT_ATTEMPTS */
  lua_pushnil(L);                                 /* SLOT_RESP */
  if (strcmp(job.op, "refresh") == 0) { lua_pushstring(L, job.strategy); lua_setfield(L, SLOT_META, "strategy"); }
  lua_getfield(L, SLOT_SPEC, "options");
  push_jsonable(L, -1, 0);
  lua_setfield(L, SLOT_META, "request");
  lua_pop(L, 1);
  insert_run(L, &job);
  job.t0 = now_ms();
  if (lock_view(&job, opt_int(L, SLOT_SPEC, "lock_wait_ms", 30000), err, sizeof err)) {
    run_attempts(L, &job);
    unlock_view(&job);
  } else {
    push_error_response(L, &job, err, NULL, 0);
    lua_replace(L, SLOT_RESP);
  }
  lua_newtable(L);
  lua_replace(L, SLOT_META);                      /* final meta starts afresh */
  build_meta(L, &job);
  finalise(L, &job, &interrupted);
  if (interrupted) return luaL_error(L, "interrupted!");
  return 1;
}

static const luaL_Reg jobs_funcs[] = {
  {"run", l_run},
  {NULL, NULL}
};

void mv_register_jobs(lua_State *L) {
  luaL_newlib(L, jobs_funcs);
  lua_setfield(L, -2, "jobs");
}
