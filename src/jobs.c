/*
 * jobs.c: jobs and run recording (core.jobs.run). A job resolves its
 * definition, inserts a run row (status 1 running, started_at, backend_pid,
 * hostname, process_pid), takes the view's advisory lock (job_lock.c), calls
 * the service mv.services.<name> through Lua in protected mode, retrying
 * transient failures with backoff (job_attempts.c), and finalises the row:
 * status 2 success or 3 failed, finished_at, duration_ms from
 * CLOCK_MONOTONIC, meta, error and, on refresh, rows_count. It returns the
 * finalised run as a table. This unit owns the job itself: the definition,
 * the run row (insert, finalise), meta, the binding and the helpers the
 * other job units share (job.h).
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
 * of l_run (see SLOT_* in job.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "core.h"
#include "job.h"
#include "pg.h"
#include "lconn.h"
#include "errors.h"
#include "interrupt.h"

#define STATUS_RUNNING 1
#define STATUS_SUCCESS 2
#define STATUS_FAILED  3

static const char *const RUN_TABLES[][2] = {
  {"create", "mat_view_create_runs"},
  {"refresh", "mat_view_refresh_runs"},
  {"delete", "mat_view_delete_runs"},
};
static const char *const STRATEGIES[] = {"regular", "concurrent", "swap"};

/* CLOCK_MONOTONIC in milliseconds. */
double job_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Integer field of the table at idx, or def when absent. */
long long job_opt_int(lua_State *L, int idx, const char *key, long long def) {
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
  snprintf(job->schema, sizeof job->schema, "%s", pg_value(res, 0, 6) ? pg_value(res, 0, 6) : "");
  int s = atoi(pg_value(res, 0, 2));
  job->strategy = s >= 0 && s <= 2 ? STRATEGIES[s] : NULL;
  if (job->strategy == NULL)
    snprintf(job->corrupt, sizeof job->corrupt, "definition %lld \"%.200s\" in mat_view_definitions is corrupt:"
             " unknown refresh_strategy %d (0 regular, 1 concurrent, 2 swap)", job->defn_id, job->name, s);
  long long lt = pg_value(res, 0, 3) ? strtoll(pg_value(res, 0, 3), NULL, 10) : def_lock;
  long long st = pg_value(res, 0, 4) ? strtoll(pg_value(res, 0, 4), NULL, 10) : def_stmt;
  snprintf(job->lock_timeout, sizeof job->lock_timeout, "%lldms", lt < 0 ? 0 : lt);
  /* none set (< 0): the session keeps the server's, role's or database's */
  if (st < 0) job->statement_timeout[0] = '\0';
  else snprintf(job->statement_timeout, sizeof job->statement_timeout, "%lldms", st);
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
  /* read before the result is held: job_opt_int may raise */
  long long def_lock = job_opt_int(L, SLOT_SPEC, "default_lock_timeout_ms", 5000);
  long long def_stmt = job_opt_int(L, SLOT_SPEC, "default_statement_timeout_ms", -1);
  PGresult *res = pg_exec(job->rec,
      "SELECT id, name, refresh_strategy, options->>'lock_timeout_ms', options->>'statement_timeout_ms',"
      " options->>'row_count', schema_name FROM mat_view_definitions"
      " WHERE (id = $1::bigint OR name = $2) AND deleted_at IS NULL", 2, vals);
  if (!pg_ok(res)) {
    const char *st = pg_sqlstate(res);
    if (st && strcmp(st, SQLSTATE_UNDEFINED_TABLE) == 0) {
      pg_clear(res);
      raise_msg(L, "the matviews catalog is not installed (run `matviews init`)", SQLSTATE_UNDEFINED_TABLE);
    }
    raise_result(L, job->rec, res, "");
  }
  if (pg_nrows(res) > 1) { /* the Lua side resolves names first; this is a direct call */
    pg_clear(res);
    lua_pushfstring(L, "the name \"%s\" is defined in several schemas: qualify it (schema.name)", vals[1]);
    raise_msg(L, lua_tostring(L, -1), NULL);
  }
  if (pg_nrows(res) == 0) {
    pg_clear(res);
    if (vals[0]) lua_pushfstring(L, "no definition with id %s", vals[0]);
    else lua_pushfstring(L, "no definition named \"%s\"", vals[1]);
    raise_msg(L, lua_tostring(L, -1), NULL);
  }
  read_definition(job, res, def_lock, def_stmt);
  pg_clear(res);
  lua_pop(L, 1);
  long long lt = job_opt_int(L, SLOT_SPEC, "lock_timeout_ms", -1);
  long long st = job_opt_int(L, SLOT_SPEC, "statement_timeout_ms", -1);
  if (lt >= 0) snprintf(job->lock_timeout, sizeof job->lock_timeout, "%lldms", lt);
  if (st >= 0) snprintf(job->statement_timeout, sizeof job->statement_timeout, "%lldms", st);
}

/* Pushes a JSON-able copy of the value at idx (strings, numbers, booleans,
 * mv.null, tables of those); anything else becomes nil. */
void job_push_jsonable(lua_State *L, int idx, int depth) {
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
    /* the depth comes from the caller's options: 3 slots a level */
    luaL_checkstack(L, 4, "options nested too deeply");
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {                    /* [copy key value] */
      int kt = lua_type(L, -2);
      if (kt == LUA_TSTRING || kt == LUA_TNUMBER) {
        job_push_jsonable(L, -1, depth + 1);          /* [copy key value v'] */
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
int job_exec_simple(PGconn *conn, const char *sql, int n, const char *const *vals,
                    char *err, size_t errlen, char *state) {
  PGresult *res = pg_exec(conn, sql, n, vals);
  int ok = pg_ok(res);
  if (!ok && err) snprintf(err, errlen, "%s", pg_errmsg(conn, res));
  if (!ok && state) snprintf(state, 8, "%s", pg_sqlstate(res) ? pg_sqlstate(res) : "");
  pg_clear(res);
  return ok;
}

/* meta[key] = jsonable(t[field]) for the table at idx. */
static void copy_field(lua_State *L, int idx, const char *field, const char *key) {
  if (!lua_istable(L, idx)) return;
  lua_getfield(L, idx, field);
  job_push_jsonable(L, -1, 0);
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
    job_push_jsonable(L, -1, 0);                      /* [req copy] */
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
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old);
  *interrupted = mv_interrupt_take(L);
  final_error(L, err, sizeof err);
  int has_rows = rows_count(L, job, rows, sizeof rows);
  snprintf(sql, sizeof sql, fmt, job->table, refresh ? ", rows_count = $6::integer" : "",
           refresh ? "rows_count" : "NULL::integer");
  snprintf(id, sizeof id, "%lld", job->run_id);
  snprintf(status, sizeof status, "%d", err[0] ? STATUS_FAILED : STATUS_SUCCESS);
  snprintf(dur, sizeof dur, "%lld", (long long)(job_now_ms() - job->t0 + 0.5));
  PGresult **res = pg_guard(L);                   /* [guard]: push_run allocates */
  const char *vals[6] = {id, status, dur, push_json(L, SLOT_META), err[0] ? err : NULL, has_rows ? rows : NULL};
  *res = pg_exec(job->rec, sql, refresh ? 6 : 5, vals);
  lua_pop(L, 1);
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (!pg_ok(*res)) {
    PGresult *failed = *res;
    *res = NULL; /* raise_result clears it before it raises */
    report_unrecorded(job, pg_errmsg(job->rec, failed), err[0] ? "failed" : "success", dur, vals[4]);
    snprintf(err, sizeof err, "could not finalise run %lld of %s: ", job->run_id, job->name);
    raise_result(L, job->rec, failed, err);
  }
  push_run(L, job, *res);                         /* [guard run] */
  pg_guard_clear(res);
  lua_remove(L, -2);                              /* [run] */
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
  snprintf(job->record_timeout, sizeof job->record_timeout, "%lldms", job_opt_int(L, SLOT_SPEC, "record_timeout_ms", 10000));
  job_exec_simple(job->rec, "SELECT set_config('lock_timeout', $1, false)", 1, tv, NULL, 0, NULL);
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
  job_push_jsonable(L, -1, 0);
  lua_setfield(L, SLOT_META, "request");
  lua_pop(L, 1);
  insert_run(L, &job);
  job.t0 = job_now_ms();
  if (job_lock_view(&job, job_opt_int(L, SLOT_SPEC, "lock_wait_ms", 30000), err, sizeof err)) {
    job_run_attempts(L, &job);
    job_unlock_view(&job);
  } else {
    job_push_error_response(L, &job, err, NULL, 0);
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

/* Registers core.jobs (run) in the core table at -1. */
void mv_register_jobs(lua_State *L) {
  luaL_newlib(L, jobs_funcs);
  lua_setfield(L, -2, "jobs");
}
