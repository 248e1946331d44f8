/*
 * recorder.c: the run recorder (core.recorder), the C primitive under the
 * job flow of lua/matviews/jobs.lua. A run is begun and finished on the
 * recorder connection, matviews's own, never the service's:
 *
 *   begin  one statement reads the definition row, inserts the run row
 *          (status running, started_at, backend_pid, hostname, process_pid,
 *          meta) and tries the view's advisory lock; the monotonic clock
 *          starts. Returns the run (a "matviews.run" userdata) and the
 *          definition row, which the job passes down: it is read once.
 *   lock   waits for the view's lock when begin could not take it.
 *   finish one statement finalises the row (status, finished_at,
 *          duration_ms from the monotonic clock, meta, error, rows_count)
 *          and releases the lock, with SIGINT blocked. A lost recorder
 *          connection is reconnected and the row written again, with
 *          backoff, for up to record_timeout_ms; a run that still cannot be
 *          finalised has its outcome written on stderr before the error is
 *          raised, so that it is not lost.
 *
 * The run userdata is the job's one cleanup point: held in a to-be-closed
 * variable, its __close (also __gc) finishes a run that was not finished as
 * failed with the error that unwound the job, and so releases the lock.
 * While the service runs, pg_watch makes the service's statements cancel
 * when the recorder's session (the lock holder) dies.
 *
 * Memory: a Run holds fixed buffers and the borrowed recorder PGconn (its
 * connection userdata is the run's user value, so it outlives the run);
 * every PGresult is cleared before anything may raise.
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
#include "vocab.h"

#define RUN_MT "matviews.run"
#define MAX_DEFERRED 8            /* recorder connections with a deferred finish or a run begun ahead */

static const char *const OPS[] = MV_OP_NAMES;
static const char *const RUN_TABLES[] = MV_RUN_TABLE_NAMES;
static const char *const STATUS_NAMES[] = MV_RUN_STATUS_NAMES;

typedef struct {
  PGconn *rec;                 /* the recorder; NULL once the run is finished */
  int op;                      /* MV_OP_* */
  long long run_id, defn_id;
  char name[256];              /* the definition's name (lock key, messages) */
  char schema[256];            /* its stored schema (lock key) */
  char record_timeout[32];     /* lock_timeout of the recorder, e.g. "10000ms" */
  long long record_timeout_ms;
  double t0;                   /* monotonic ms when the run began */
  double lock_wait_ms;
  int locked;                  /* the view's advisory lock is held */
  int ahead;                   /* begun ahead, not confirmed yet (run:confirm) */
  int unconfirmed;             /* confirmed while a finish sent before it was still unread (run:regain) */
  int watching;                /* its service is watched (run:watch) */
  int session_pid;             /* the recorder's backend when the row was inserted */
} Run;

/* Blocks SIGINT and SIGTERM (old: the mask to restore): what is written
 * then is awaited whole, and the signal is delivered after. */
static void block_signals(sigset_t *old) {
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, old);
}

/* CLOCK_MONOTONIC in milliseconds. */
static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Sleeps ms milliseconds (signals may end it early). */
static void sleep_ms(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* The run userdata at idx; its recorder is forgotten when the recorder
 * connection was closed meanwhile (the run is then over). */
static Run *check_run(lua_State *L, int idx) {
  Run *run = (Run *)luaL_checkudata(L, idx, RUN_MT);
  if (run->rec != NULL) {
    lua_getiuservalue(L, idx, 1);
    if (mv_toconn(L, -1) != run->rec) run->rec = NULL;
    lua_pop(L, 1);
  }
  return run;
}

/* Copies the message of a failed result (trailing newlines cut) into out. */
static void result_message(PGconn *conn, PGresult *res, char *out, size_t len) {
  snprintf(out, len, "%s", pg_errmsg(conn, res));
  size_t n = strlen(out);
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = '\0';
}

/* Encodes the table at idx as cjson.encode would (core.json_encode, in
 * protected mode); pushes the text, or "{}" when it cannot be encoded. */
static const char *push_json(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, mv_json_encode);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "{}");
  }
  return lua_tostring(L, -1);
}

/* Integer field of the table at idx, or def. */
static long long opt_int(lua_State *L, int idx, const char *key, long long def) {
  lua_getfield(L, idx, key);
  long long v = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* The begin statement's own columns, before the definition's (d.*): not
 * given to Lua with the definition row. */
static const char *const BEGIN_OWN_COLUMNS[] = {
  "matviews_run_id", "matviews_locked", "matviews_matches", "matviews_async", "matviews_generic", "matviews_indexed", NULL
};

/* The begin statement: the definition row (columns: the caller's list of
 * mat_view_definitions columns), the run row inserted, the lock tried.
 * The definitions that match are counted once (n): more than one is an
 * ambiguous name, none a missing definition; d is the one that matches.
 * It also makes the recorder's session plan its statements once: this
 * connection runs only the recorder's own prepared statements, whose
 * generic plans are as good as custom ones (each looks a row up by key),
 * and planning each execution again was a tenth of its backend's CPU.
 * For the same reason it turns sequential scans off there: the generic
 * plan of the definition lookup (id = $1 OR name = $2) otherwise reads a
 * small catalog whole, twice per begin (the label's check too), where
 * the primary key and name indexes find the row: 8 % of the server's
 * instructions for a begin and finish (bench/recorder_cpu.sh). Both are
 * set by every begin, not once per connection, so that a session opened
 * again after a lost connection gets them with its next begin. */
static char *begin_sql(int op, const char *columns) {
  static const char *const strategies[] = MV_STRATEGY_NAMES;
  char meta[256] = "$4::jsonb";
  if (op == MV_OP_REFRESH)
    snprintf(meta, sizeof meta, "jsonb_set($4::jsonb, '{strategy}', coalesce(to_jsonb((ARRAY['%s', '%s', '%s'])"
             "[d.refresh_strategy + 1]), 'null'))", strategies[0], strategies[1], strategies[2]);
  const char *fmt = "WITH c AS (SELECT %s FROM mat_view_definitions WHERE (id = $1::bigint"
    " OR (name = $2 AND ($5::text IS NULL OR schema_name = $5))) AND deleted_at IS NULL),"
    " n AS (SELECT count(*) AS n FROM c), d AS (SELECT c.* FROM c, n WHERE n.n = 1),"
    " r AS (INSERT INTO %s (mat_view_definition_id, status, started_at, backend_pid, hostname, process_pid,"
    " meta, created_at, updated_at) SELECT d.id, %d, clock_timestamp(), pg_backend_pid(), $3, %d, %s,"
    " clock_timestamp(), clock_timestamp() FROM d RETURNING id)"
    " SELECT r.id AS matviews_run_id, CASE WHEN d.id IS NOT NULL THEN pg_try_advisory_lock("
    MV_LOCK_KEY_SQL("d.schema_name", "d.name") ") END AS matviews_locked, n.n AS matviews_matches,"
    " set_config('synchronous_commit', 'off', true) AS matviews_async,"
    " set_config('plan_cache_mode', 'force_generic_plan', false) AS matviews_generic,"
    " set_config('enable_seqscan', 'off', false) AS matviews_indexed,"
    " d.* FROM n LEFT JOIN d ON true LEFT JOIN r ON true";
  size_t n = strlen(fmt) + strlen(columns) + strlen(meta) + 128;
  char *sql = malloc(n);
  if (sql) snprintf(sql, n, fmt, columns, RUN_TABLES[op], MV_RUN_RUNNING, (int)getpid(), meta);
  return sql;
}

/* Raises the "no such definition" error for spec.definition at idx. */
static int raise_missing(lua_State *L, const char *id, const char *name, const char *schema) {
  if (id) lua_pushfstring(L, "no definition with id %s", id);
  else if (schema) lua_pushfstring(L, "no definition named \"%s.%s\"", schema, name);
  else lua_pushfstring(L, "no definition named \"%s\"", name);
  mv_error_push(L, lua_tostring(L, -1), NULL);
  return lua_error(L);
}

/* Raises the error of a failed begin (res cleared here). */
static int raise_begin(lua_State *L, PGconn *rec, PGresult *res) {
  char msg[1100], state[8] = "";
  const char *st = pg_sqlstate(res);
  if (st) snprintf(state, sizeof state, "%s", st);
  if (strcmp(state, SQLSTATE_UNDEFINED_TABLE) == 0) snprintf(msg, sizeof msg, "the matviews catalog is not installed (run `matviews init`)");
  else {
    char why[1024];
    result_message(rec, res, why, sizeof why);
    snprintf(msg, sizeof msg, "could not record the run: %s", why);
  }
  pg_clear(res);
  mv_error_push(L, msg, state[0] ? state : NULL);
  return lua_error(L);
}

/* Fills run from the begin row (columns 0 run id, 1 locked, 2 matches,
 * then d.*). */
static void read_begin(Run *run, PGresult *res) {
  run->run_id = strtoll(pg_value(res, 0, 0), NULL, 10);
  run->locked = pg_value(res, 0, 1) && pg_value(res, 0, 1)[0] == 't';
  int c = PQfnumber(res, "id"), n = PQfnumber(res, "name"), s = PQfnumber(res, "schema_name");
  run->defn_id = c >= 0 && pg_value(res, 0, c) ? strtoll(pg_value(res, 0, c), NULL, 10) : 0;
  snprintf(run->name, sizeof run->name, "%s", n >= 0 && pg_value(res, 0, n) ? pg_value(res, 0, n) : "?");
  snprintf(run->schema, sizeof run->schema, "%s", s >= 0 && pg_value(res, 0, s) ? pg_value(res, 0, s) : "");
}

/* This host's name, as the run rows record it ("" when unknown). */
static void host_name(char *out, size_t len) {
  if (gethostname(out, len) != 0) out[0] = '\0';
  out[len - 1] = '\0';
}

/* Statements sent on a recorder without waiting for their result: a
 * batch's pipelined finishes and its next run begun ahead. pg.c returns
 * their results in the order they were sent, which their numbers (seq)
 * keep: reading one reads those sent before it first (read_through). */
static long long sent_seq;

/* Finishes sent without waiting for their result (pipelined: a batch's
 * runs, see finish): what is needed to write the row again should it fail
 * (the run, the statement's values) and the run table given to Lua (a
 * registry reference), which gets the row's timestamps when the result is
 * read (settle). */
#define N_FINISH_VALS 9
typedef struct {
  long long seq;
  int read;                    /* its result was taken from the connection (into res) */
  PGresult *res;
} Sent;

static struct Pending {
  PGconn *rec;                 /* NULL: free */
  Run run;
  char *vals[N_FINISH_VALS];
  int ref;
  Sent sent;
} pending[MAX_DEFERRED];

/* A batch's next run begun ahead (recorder.begin_ahead): its begin sent
 * without waiting as the current view's service starts, so that the
 * server inserts the row and takes the lock while the current view
 * refreshes; the next begin of that op and definition on that recorder
 * takes the result. A begin of another definition or the batch's end
 * (recorder.flush) withdraws it, and so does a current view that runs for
 * more than spec.ahead_ms (begin_ahead_ms; checked while statements and
 * backoffs wait): the row is deleted and the lock released, as a run that
 * never started has neither, and the run is begun when it starts. One per
 * recorder connection. */
static struct Ahead {
  PGconn *rec;                 /* NULL: free */
  int op;
  char key[600];               /* id or name, "\n", schema */
  double until;                /* monotonic ms when it is withdrawn unless taken */
  int session_pid;             /* the recorder's backend it was sent to */
  Sent sent;
} ahead[MAX_DEFERRED];

/* Takes off rec's connection, in the order sent, the results of the
 * statements sent without waiting up to number seq. */
/* Makes s (sent on connection on) *oldest when it is rec's, unread, no
 * later than seq and older than *oldest. */
static void older(Sent **oldest, PGconn *on, PGconn *rec, Sent *s, long long seq) {
  if (on == rec && rec && !s->read && s->seq <= seq && (*oldest == NULL || s->seq < (*oldest)->seq)) *oldest = s;
}

static void read_through(PGconn *rec, long long seq) {
  for (;;) {
    Sent *oldest = NULL;
    for (int i = 0; i < MAX_DEFERRED; i++) {
      older(&oldest, pending[i].rec, rec, &pending[i].sent, seq);
      older(&oldest, ahead[i].rec, rec, &ahead[i].sent, seq);
    }
    if (oldest == NULL) return;
    oldest->res = pg_deferred_take(rec);
    oldest->read = 1;
  }
}

static void settle(lua_State *L, PGconn *rec);

/* What a begin statement is sent with, read from a spec table: op,
 * definition (name or id), schema (of the name, or nil), columns (the
 * definition columns to read), meta (the run's first meta), record_timeout_ms.
 * The strings stay on the Lua stack: five values pushed here. */
typedef struct {
  int op;
  char idbuf[32], host[256];
  const char *vals[5];         /* id, name, host, meta, schema */
  const char *columns;
  long long record_timeout_ms;
} BeginSpec;

static void begin_spec(lua_State *L, int spec, BeginSpec *b);

/* The arguments (rec, spec) of begin and begin_ahead: the recorder, and
 * the spec read into b. */
static PGconn *begin_args(lua_State *L, BeginSpec *b) {
  PGconn *rec = mv_checkconn(L, 1);
  lua_settop(L, 2);
  begin_spec(L, 2, b);
  return rec;
}

static void begin_spec(lua_State *L, int spec, BeginSpec *b) {
  memset(b, 0, sizeof *b);
  luaL_checktype(L, spec, LUA_TTABLE);
  lua_getfield(L, spec, "op");
  b->op = luaL_checkoption(L, -1, NULL, OPS);
  lua_pop(L, 1);
  lua_getfield(L, spec, "definition");
  if (lua_isinteger(L, -1)) { snprintf(b->idbuf, sizeof b->idbuf, "%lld", (long long)lua_tointeger(L, -1)); b->vals[0] = b->idbuf; }
  else if (lua_type(L, -1) == LUA_TSTRING) b->vals[1] = lua_tostring(L, -1);
  else luaL_error(L, "a job needs a definition name or id");
  lua_getfield(L, spec, "columns");
  b->columns = luaL_checkstring(L, -1);
  luaL_argcheck(L, strchr(b->columns, ';') == NULL, spec, "columns must be a column list");
  lua_getfield(L, spec, "meta");
  b->vals[3] = push_json(L, lua_gettop(L));
  lua_getfield(L, spec, "schema");
  b->vals[4] = lua_tostring(L, -1);
  host_name(b->host, sizeof b->host);
  b->vals[2] = b->host;
  b->record_timeout_ms = opt_int(L, spec, "record_timeout_ms", 10000);
}

static void ahead_key(const BeginSpec *b, char *out, size_t len) {
  snprintf(out, len, "%s\n%s", b->vals[0] ? b->vals[0] : b->vals[1], b->vals[4] ? b->vals[4] : "");
}

static struct Ahead *ahead_of(PGconn *rec) {
  for (int i = 0; i < MAX_DEFERRED && rec; i++) if (ahead[i].rec == rec) return &ahead[i];
  return NULL;
}

void mv_ahead_due(void);

/* Sets pg.c's wait deadline to the first run begun ahead to withdraw. */
static void arm_ahead(void) {
  struct Ahead *first = NULL;
  for (int i = 0; i < MAX_DEFERRED; i++)
    if (ahead[i].rec && !ahead[i].sent.read && (first == NULL || ahead[i].until < first->until)) first = &ahead[i];
  if (first) pg_wait_deadline(first->until, mv_ahead_due, first->rec);
  else pg_wait_deadline(0, NULL, NULL);
}

/* Takes the begun-ahead run's result off rec's connection, if not yet. */
static void ahead_read(struct Ahead *a) {
  if (a && !a->sent.read) { read_through(a->rec, a->sent.seq); arm_ahead(); }
}

/* Withdraws a begun-ahead run that no begin took: its row deleted, its
 * lock released (a run that never started has neither). */
static void withdraw(struct Ahead *a) {
  sigset_t old;                                   /* not a statement SIGINT cancels: it is awaited whole */
  block_signals(&old);
  ahead_read(a);
  PGresult *res = a->sent.res;
  if (pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0) && pg_connected(a->rec)) {
    Run begun;                                    /* what the begin row says: id, lock, name */
    char sql[512], id[32];
    read_begin(&begun, res);
    snprintf(id, sizeof id, "%lld", begun.run_id);
    const char *vals[3] = {id, begun.schema, begun.name};
    snprintf(sql, sizeof sql, "WITH gone AS (DELETE FROM %s WHERE id = $1::bigint) SELECT CASE WHEN %s THEN"
             " pg_advisory_unlock(" MV_LOCK_KEY_SQL("$2::text", "$3::text") ") END", RUN_TABLES[a->op],
             begun.locked ? "true" : "false");
    pg_clear(pg_exec(a->rec, sql, 3, vals));
  }
  pg_clear(a->sent.res);
  memset(a, 0, sizeof *a);
  arm_ahead();
  sigprocmask(SIG_SETMASK, &old, NULL);
}

/* begin_ahead(rec, spec) -> whether it was sent: begins, without waiting,
 * the run of spec (as begin takes it, plus ahead_ms) that the batch runs
 * next. */
static int l_begin_ahead(lua_State *L) {
  BeginSpec b;
  PGconn *rec = begin_args(L, &b);
  struct Ahead *a = ahead_of(rec);
  if (a) withdraw(a);
  for (int i = 0; i < MAX_DEFERRED && a == NULL; i++) if (ahead[i].rec == NULL) a = &ahead[i];
  char timeout[32];
  snprintf(timeout, sizeof timeout, "%lldms", b.record_timeout_ms);
  pg_want_timeouts(rec, timeout, NULL, 0);
  char *sql = a ? begin_sql(b.op, b.columns) : NULL;
  int sent = sql && pg_send_deferred(rec, sql, 5, b.vals);
  free(sql);
  if (sent) {
    memset(a, 0, sizeof *a);
    a->rec = rec;
    a->op = b.op;
    ahead_key(&b, a->key, sizeof a->key);
    a->until = now_ms() + (double)opt_int(L, 2, "ahead_ms", 50);
    a->sent.seq = ++sent_seq;
    a->session_pid = pg_backend_pid(rec);
    arm_ahead();
  }
  lua_pushboolean(L, sent);
  return 1;
}

/* Withdraws the runs begun ahead whose ahead_ms has passed and that no
 * begin took (the view before them is still running). */
void mv_ahead_due(void) {
  double now = now_ms();
  for (int i = 0; i < MAX_DEFERRED; i++)
    if (ahead[i].rec && now >= ahead[i].until) withdraw(&ahead[i]);
  arm_ahead();
}

/* begin(rec, spec) -> run, row | nil, "ambiguous". spec: see begin_spec.
 * Raises when there is no such definition (a run row needs one) or the
 * row cannot be written; a plain name defined in several schemas returns
 * nil, "ambiguous" (nothing is written). A run begun ahead for the same
 * op and definition is taken as this begin's (when its statement failed,
 * the begin runs as usual). */
static int l_begin(lua_State *L) {
  BeginSpec b;
  PGconn *rec = begin_args(L, &b);                        /* 3..7: the spec's strings */
  const char **vals = b.vals;
  Run *run = lua_newuserdatauv(L, sizeof(Run), 1);       /* 8 */
  memset(run, 0, sizeof *run);
  luaL_setmetatable(L, RUN_MT);
  run->op = b.op;
  run->record_timeout_ms = b.record_timeout_ms;
  snprintf(run->record_timeout, sizeof run->record_timeout, "%lldms", run->record_timeout_ms);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 8, 1);                             /* the run keeps its recorder alive */
  PGresult **res = pg_guard(L);                           /* 9: pushing rows allocates */
  struct Ahead *a = ahead_of(rec);
  char key[600];
  ahead_key(&b, key, sizeof key);
  if (a && (a->op != b.op || strcmp(a->key, key) != 0)) { withdraw(a); a = NULL; }
  if (a) {                                                /* begun ahead: its result */
    ahead_read(a);
    *res = a->sent.res;
    run->t0 = now_ms();                                   /* the run starts now (its row a little earlier) */
    run->ahead = 1;
    run->session_pid = a->session_pid;
    a->sent.res = NULL;
    memset(a, 0, sizeof *a);
    arm_ahead();
    if (!pg_ok(*res)) { pg_clear(*res); *res = NULL; } /* failed: begun again below, as usual */
  }
  if (*res == NULL) {
    pg_want_timeouts(rec, run->record_timeout, NULL, 0);
    char *sql = begin_sql(b.op, b.columns);
    if (sql == NULL) return luaL_error(L, "out of memory");
    run->t0 = now_ms();
    *res = pg_exec_prepared(rec, sql, 5, vals);          /* behind the last run's pipelined finish, if any */
    settle(L, rec);                                       /* that finish's result: written again if it failed */
    if (!pg_ok(*res) && pg_sqlstate(*res) == NULL && pg_connected(rec)) {
      pg_clear(*res);                                     /* lost with the connection that settle opened again */
      *res = NULL;
      pg_want_timeouts(rec, run->record_timeout, NULL, 0);
      run->t0 = now_ms();
      *res = pg_exec_prepared(rec, sql, 5, vals);
    }
    free(sql);
  }
  if (!pg_ok(*res)) { PGresult *failed = *res; *res = NULL; return raise_begin(L, rec, failed); }
  long long matches = pg_nrows(*res) == 1 ? strtoll(pg_value(*res, 0, 2), NULL, 10) : 0;
  if (matches > 1) { pg_guard_clear(res); lua_pushnil(L); lua_pushliteral(L, "ambiguous"); return 2; }
  if (matches == 0 || pg_value(*res, 0, 0) == NULL) { pg_guard_clear(res); return raise_missing(L, vals[0], vals[1], vals[4]); }
  read_begin(run, *res);
  run->rec = rec;                                         /* from here __close finishes it */
  pg_push_rows(L, *res);                                  /* 10 */
  pg_guard_clear(res);
  lua_geti(L, 10, 1);                                     /* 11: the row */
  for (int i = 0; BEGIN_OWN_COLUMNS[i]; i++) { lua_pushnil(L); lua_setfield(L, 11, BEGIN_OWN_COLUMNS[i]); }
  lua_pushvalue(L, 8);
  lua_insert(L, -2);
  return 2;
}

/* Writes "name: <op> already running in pid P on HOST" (or who else holds
 * the view's lock) into err. */
static void describe_holder(Run *run, char *err, size_t errlen) {
  const char *vals[2] = {run->schema, run->name};
  char runs[512] = "", sql[1536];
  size_t used = 0;
  for (int op = 0; op < MV_N_OPS && used < sizeof runs; op++)     /* the running runs of every op */
    used += (size_t)snprintf(runs + used, sizeof runs - used, "%s SELECT '%s' AS op, process_pid, hostname,"
                             " started_at, backend_pid, status FROM %s", op ? " UNION ALL" : "", OPS[op], RUN_TABLES[op]);
  snprintf(sql, sizeof sql,
    "SELECT r.process_pid, r.hostname, r.op, l.pid FROM pg_locks l LEFT JOIN LATERAL ("
    " SELECT op, process_pid, hostname, started_at FROM (%s) x"
    " WHERE x.status = %d AND x.backend_pid = l.pid ORDER BY started_at DESC LIMIT 1) r ON true"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid()"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = " MV_LOCK_KEY_SQL("$1", "$2") " LIMIT 1", runs, MV_RUN_RUNNING);
  PGresult *res = pg_exec(run->rec, sql, 2, vals);
  if (pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0))
    snprintf(err, errlen, "%s: %s already running in pid %s on %s", run->name,
             pg_value(res, 0, 2), pg_value(res, 0, 0), pg_value(res, 0, 1) ? pg_value(res, 0, 1) : "?");
  else if (pg_ok(res) && pg_nrows(res) == 1)
    snprintf(err, errlen, "%s: already locked by backend pid %s (not a recorded run)", run->name, pg_value(res, 0, 3));
  else
    snprintf(err, errlen, "%s: already running elsewhere (waited %.0f ms)", run->name, run->lock_wait_ms);
  pg_clear(res);
}

/* run:lock(wait_ms) -> true | false, message. Waits up to wait_ms for the
 * view's lock when begin did not get it (0: do not wait). */
static int l_lock(lua_State *L) {
  Run *run = check_run(L, 1);
  long long wait = luaL_optinteger(L, 2, 30000);
  char err[1200] = "", state[8] = "", ms[32];
  if (run->rec == NULL) return luaL_error(L, "the run is finished");
  if (!run->locked && wait > 0) {
    const char *vals[2] = {run->schema, run->name};
    double t = now_ms();
    snprintf(ms, sizeof ms, "%lldms", wait);
    pg_want_timeouts(run->rec, ms, NULL, 0);
    PGresult *res = pg_exec(run->rec, "SELECT pg_advisory_lock(" MV_LOCK_KEY_SQL("$1", "$2") ")", 2, vals);
    pg_want_timeouts(run->rec, run->record_timeout, NULL, 0);
    run->lock_wait_ms = now_ms() - t;
    run->locked = pg_ok(res);
    if (!run->locked) {
      result_message(run->rec, res, err, sizeof err);
      snprintf(state, sizeof state, "%s", pg_sqlstate(res) ? pg_sqlstate(res) : "");
    }
    pg_clear(res);
  } else if (!run->locked) {
    snprintf(state, sizeof state, "%s", SQLSTATE_LOCK_NOT_AVAILABLE);
  }
  if (run->locked) { lua_pushboolean(L, 1); return 1; }
  if (strcmp(state, SQLSTATE_LOCK_NOT_AVAILABLE) == 0) describe_holder(run, err, sizeof err);
  lua_pushboolean(L, 0);
  lua_pushstring(L, err);
  return 2;
}

/* Stops watching run's service, if it is watched (a run finished while
 * the next one's service runs leaves that one's watch alone). */
static void unwatch(Run *run) {
  if (run->watching) pg_watch(NULL, NULL);
  run->watching = 0;
}

/* run:watch(on [, conn]): while on, a statement on conn (the service's)
 * is cancelled when the recorder's session (the lock holder) dies.
 * Returns whether it died since watching began. */
static int l_watch(lua_State *L) {
  Run *run = check_run(L, 1);
  int lost = pg_watch_lost();
  PGconn *svc = mv_toconn(L, 3);
  run->watching = lua_toboolean(L, 2) && run->rec && svc;
  if (run->watching) pg_watch(run->rec, svc);
  else pg_watch(NULL, NULL);
  lua_pushboolean(L, lost);
  return 1;
}

/* Whether a finish sent on rec without waiting is still to be settled
 * (unread: and its result not read off the connection yet). */
static int finish_pending(PGconn *rec, int unread) {
  for (int i = 0; i < MAX_DEFERRED; i++)
    if (pending[i].rec == rec && rec && !(unread && pending[i].sent.read)) return 1;
  return 0;
}

/* After settle: when the recorder's session is no longer the one that
 * inserted run's row (a finish read there ended it, and settle opened a
 * new one), the new session takes the row and the lock over. Returns
 * whether run's lock is held. */
static int take_over(Run *run) {
  if (pg_backend_pid(run->rec) == run->session_pid) return 1;
  char id[32], sql[512];
  snprintf(id, sizeof id, "%lld", run->run_id);
  const char *vals[3] = {id, run->schema, run->name};
  snprintf(sql, sizeof sql, "UPDATE %s SET backend_pid = pg_backend_pid() WHERE id = $1::bigint"
           " RETURNING pg_try_advisory_lock(" MV_LOCK_KEY_SQL("$2::text", "$3::text") ")", RUN_TABLES[run->op]);
  PGresult *res = pg_exec(run->rec, sql, 3, vals);
  run->locked = pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0) && pg_value(res, 0, 0)[0] == 't';
  run->session_pid = pg_backend_pid(run->rec);
  pg_clear(res);
  return run->locked;
}

/* run:confirm() -> true | false, message. A run begun ahead is confirmed
 * before its service starts. The finishes sent on its recorder before it
 * are not waited for: while the recorder's session is alive, the view
 * starts at once, its service watched (run:watch) as always, and should
 * the session end before the service is done, run:regain takes the run
 * over on a new one. With the session already gone, they are read first
 * (settle, which opens a new session) and the new session takes over the
 * run's row and lock; false when the lock is gone meanwhile. Other runs:
 * true. */
static int l_confirm(lua_State *L) {
  Run *run = check_run(L, 1);
  if (run->rec == NULL || !run->ahead) { lua_pushboolean(L, 1); return 1; }
  run->ahead = 0;
  if (finish_pending(run->rec, 1) && pg_alive(run->rec)) { run->unconfirmed = 1; lua_pushboolean(L, 1); return 1; }
  settle(L, run->rec);
  if (take_over(run)) { lua_pushboolean(L, 1); return 1; }
  lua_pushboolean(L, 0);
  lua_pushfstring(L, "%s: lost the view's lock (the recorder's session ended before the view started)", run->name);
  return 2;
}

/* run:regain() -> whether the run was taken over: for a run whose
 * recorder's session ended while its service ran (run:watch said lost)
 * with an earlier run's finish sent on it and not settled (the run was
 * confirmed before that finish was read, run:confirm, or the finish was
 * sent while the service ran, jobs.start_held), the finishes are read
 * (settle writes them again on a new session) and the new session takes
 * the row and the lock over, so that the attempt can be made again. false
 * for any other run, or when the lock is taken meanwhile. */
static int l_regain(lua_State *L) {
  Run *run = check_run(L, 1);
  int was = run->unconfirmed || finish_pending(run->rec, 0);
  run->unconfirmed = 0;
  if (run->rec == NULL || !was) { lua_pushboolean(L, 0); return 1; }
  settle(L, run->rec);
  lua_pushboolean(L, take_over(run));
  return 1;
}

/* run:info() -> { id, definition_id, view, lock_wait_ms, elapsed_ms } */
static int l_info(lua_State *L) {
  Run *run = check_run(L, 1);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)run->run_id); lua_setfield(L, -2, "id");
  lua_pushinteger(L, (lua_Integer)run->defn_id); lua_setfield(L, -2, "definition_id");
  lua_pushstring(L, run->name); lua_setfield(L, -2, "view");
  lua_pushinteger(L, (lua_Integer)(run->lock_wait_ms + 0.5)); lua_setfield(L, -2, "lock_wait_ms");
  lua_pushnumber(L, now_ms() - run->t0); lua_setfield(L, -2, "elapsed_ms");
  return 1;
}

/* The finish statement: the row finalised and, when held, the lock
 * released in the same statement (the last column). Parameters: $1 id,
 * $2 status, $3 duration, $4 meta, $5 error, then rows_count (refresh),
 * then synchronous_commit for this transaction (NULL: the session's), then
 * the lock's schema and name. started_at is kept no earlier than the
 * session's last finish (matviews.finished_at, set here): a run begun ahead
 * had its row inserted before the run before it was finalised, but starts
 * after, and its row says so. */
static void finish_sql(Run *run, char *sql, size_t len) {
  int refresh = run->op == MV_OP_REFRESH, sc = refresh ? 7 : 6;
  char unlock[160] = "";
  if (run->locked) {
    char a[8], b[8];
    snprintf(a, sizeof a, "$%d", sc + 1);
    snprintf(b, sizeof b, "$%d", sc + 2);
    snprintf(unlock, sizeof unlock, ", pg_advisory_unlock(" MV_LOCK_KEY_SQL("%s", "%s") ")", a, b);
  }
  snprintf(sql, len, "UPDATE %s SET status = $2, finished_at = clock_timestamp(), duration_ms = $3,"
    " meta = $4::jsonb, error = $5, updated_at = clock_timestamp(),"
    " started_at = greatest(started_at, nullif(current_setting('matviews.finished_at', true), '')::timestamptz)%s"
    " WHERE id = $1 RETURNING"
    " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " duration_ms, %s, error, backend_pid, hostname, process_pid, status,"
    " set_config('matviews.finished_at', finished_at::text, false),"
    " set_config('synchronous_commit', coalesce($%d::text, current_setting('synchronous_commit')), true)%s",
    RUN_TABLES[run->op], refresh ? ", rows_count = $6::integer" : "", refresh ? "rows_count" : "NULL::integer",
    sc, unlock);
}

/* Writes on stderr the outcome of a run whose row could not be finalised
 * (why: the error of the UPDATE), so that it is not lost. */
static void report_unrecorded(Run *run, const char *why, const char *status, const char *dur, const char *err) {
  char line[1600];
  size_t n = (size_t)snprintf(line, sizeof line, "matviews: could not record the outcome of %s run %lld of %s (%s): %s in %s ms",
                              OPS[run->op], run->run_id, run->name, why, status, dur);
  if (err && n < sizeof line) snprintf(line + n, sizeof line - n, ": %s", err);
  for (char *p = line; *p; p++) if (*p == '\n') *p = ' ';
  fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

/* The number of parameters of run's finish statement. */
static int finish_nparams(const Run *run) {
  return (run->op == MV_OP_REFRESH ? 7 : 6) + (run->locked ? 2 : 0);
}

/* Runs the finish statement, reconnecting a lost recorder and trying again
 * with backoff until record_timeout_ms has passed. why gets the first
 * error when it fails. */
static PGresult *finish_exec(Run *run, const char **vals, char *why, size_t whylen) {
  char sql[1600];
  double deadline = now_ms() + (double)run->record_timeout_ms;
  long wait = 50;
  why[0] = '\0';
  for (;;) {
    finish_sql(run, sql, sizeof sql);
    PGresult *res = pg_exec_prepared(run->rec, sql, finish_nparams(run), vals);
    if (pg_ok(res)) return res;
    if (why[0] == '\0' && !pg_connected(run->rec)) snprintf(why, whylen, "no connection to the server");
    else if (why[0] == '\0') result_message(run->rec, res, why, whylen);
    if (pg_connected(run->rec) || now_ms() + (double)wait > deadline) return res;
    pg_clear(res);
    run->locked = 0;                              /* it ended with the session */
    sleep_ms(wait);
    wait = wait * 2 > 2000 ? 2000 : wait * 2;
    if (pg_reset(run->rec)) pg_want_timeouts(run->rec, run->record_timeout, NULL, 0);
  }
}

/* Releases the lock on its own after a finish statement that failed. */
static void unlock_alone(Run *run) {
  if (!run->locked || !pg_connected(run->rec)) return;
  const char *vals[2] = {run->schema, run->name};
  pg_clear(pg_exec(run->rec, "SELECT pg_advisory_unlock(" MV_LOCK_KEY_SQL("$1", "$2") ")", 2, vals));
  run->locked = 0;
}

/* Sets on the run table at -1 the finalised row's columns (res row 0). */
static void fill_run(lua_State *L, PGresult *res) {
  static const char *cols[] = {"started_at", "finished_at", "duration_ms", "rows_count", "error",
                               "backend_pid", "hostname", "process_pid", "status"};
  for (int c = 0; c < 9; c++) {
    const char *v = pg_value(res, 0, c);
    if (v == NULL) continue;
    if (c == 2 || c == 3 || c == 5 || c == 7) lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
    else if (c == 8) lua_pushstring(L, STATUS_NAMES[atoi(v) == MV_RUN_SUCCESS ? MV_RUN_SUCCESS : MV_RUN_FAILED]);
    else lua_pushstring(L, v);
    lua_setfield(L, -2, cols[c]);
  }
}

/* Pushes the run table: from the finalised row (res row 0), or, for a
 * finish whose result is not read yet (res NULL), from what this process
 * sent (vals of finish: status, duration, error, rows_count) and knows
 * (its pid and host, the recorder's backend pid); its started_at and
 * finished_at are set when the result is read (settle). */
static void push_run(lua_State *L, Run *run, PGresult *res, int meta, const char *const *vals, PGconn *rec) {
  lua_createtable(L, 0, 16);
  lua_pushinteger(L, (lua_Integer)run->run_id); lua_setfield(L, -2, "id");
  lua_pushstring(L, OPS[run->op]); lua_setfield(L, -2, "op");
  lua_pushinteger(L, (lua_Integer)run->defn_id); lua_setfield(L, -2, "mat_view_definition_id");
  lua_pushstring(L, run->name); lua_setfield(L, -2, "view");
  if (res) fill_run(L, res);
  else {
    char host[256];
    host_name(host, sizeof host);
    lua_pushstring(L, STATUS_NAMES[atoi(vals[1])]); lua_setfield(L, -2, "status");
    lua_pushinteger(L, (lua_Integer)strtoll(vals[2], NULL, 10)); lua_setfield(L, -2, "duration_ms");
    if (vals[4]) { lua_pushstring(L, vals[4]); lua_setfield(L, -2, "error"); }
    if (run->op == MV_OP_REFRESH && vals[5]) { lua_pushinteger(L, (lua_Integer)strtoll(vals[5], NULL, 10)); lua_setfield(L, -2, "rows_count"); }
    lua_pushinteger(L, pg_backend_pid(rec)); lua_setfield(L, -2, "backend_pid");
    lua_pushstring(L, host); lua_setfield(L, -2, "hostname");
    lua_pushinteger(L, (lua_Integer)getpid()); lua_setfield(L, -2, "process_pid");
  }
  lua_pushinteger(L, (lua_Integer)(run->lock_wait_ms + 0.5)); lua_setfield(L, -2, "lock_wait_ms");
  if (meta) { lua_pushvalue(L, meta); lua_setfield(L, -2, "meta"); }
}

/* Finishes committed without waiting for their WAL flush (defer_flush),
 * per recorder connection: the last one, which recorder.flush rewrites
 * with a synchronous commit (flushing every earlier one with it). */
static struct { PGconn *rec; int op; long long run_id; } deferred[MAX_DEFERRED];

/* Notes (or, after a synchronous finish, forgets) run's recorder's
 * deferred finish. */
static void note_deferred(Run *run, int defer) {
  int free_slot = -1;
  for (int i = 0; i < MAX_DEFERRED; i++) {
    if (deferred[i].rec == run->rec) { free_slot = i; break; }
    if (deferred[i].rec == NULL && free_slot < 0) free_slot = i;
  }
  if (free_slot < 0) { free_slot = 0; }           /* never more recorders than slots in practice */
  if (!defer) { if (deferred[free_slot].rec == run->rec) deferred[free_slot].rec = NULL; return; }
  deferred[free_slot].rec = run->rec;
  deferred[free_slot].op = run->op;
  deferred[free_slot].run_id = run->run_id;
}


/* Forgets pending finish p. */
static void pending_free(lua_State *L, struct Pending *p) {
  pg_clear(p->sent.res);
  p->sent.res = NULL;
  for (int i = 0; i < N_FINISH_VALS; i++) { free(p->vals[i]); p->vals[i] = NULL; }
  luaL_unref(L, LUA_REGISTRYINDEX, p->ref);
  p->ref = LUA_NOREF;
  p->rec = NULL;
}

static PGresult *finish_exec(Run *run, const char **vals, char *why, size_t whylen);
static void unlock_alone(Run *run);

/* Reads the result of the finish pending on rec, if any (SIGINT and
 * SIGTERM blocked: it is awaited whole). One that failed is written again
 * the way a finish is (reconnecting a lost recorder, with backoff, up to
 * record_timeout_ms); one that still cannot be written has its outcome
 * written on stderr, so that it is not lost. Never raises. */
static void settle_one(lua_State *L, struct Pending *p) {
  PGconn *rec = p->rec;
  sigset_t old;
  block_signals(&old);
  read_through(rec, p->sent.seq);
  PGresult *res = p->sent.res;
  p->sent.res = NULL;
  char why[1024] = "";
  int written = res == NULL || pg_ok(res);        /* NULL: read and dropped by a reset or close */
  if (!written) {
    pg_clear(res);
    p->run.rec = rec;
    res = finish_exec(&p->run, (const char **)p->vals, why, sizeof why);
    written = pg_ok(res);
    if (!written) {
      unlock_alone(&p->run);
      report_unrecorded(&p->run, why, STATUS_NAMES[atoi(p->vals[1]) == MV_RUN_SUCCESS ? MV_RUN_SUCCESS : MV_RUN_FAILED],
                        p->vals[2], p->vals[4]);
    }
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (p->ref != LUA_NOREF && lua_checkstack(L, 4)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
    if (lua_istable(L, -1) && res != NULL && written) fill_run(L, res);
    else if (lua_istable(L, -1) && !written) {    /* as a finish that could not be written is returned */
      lua_pushstring(L, STATUS_NAMES[MV_RUN_FAILED]); lua_setfield(L, -2, "status");
      lua_pushfstring(L, "could not finalise run %s of %s: %s", p->vals[0], p->run.name, why);
      lua_setfield(L, -2, "error");
    }
    lua_pop(L, 1);
  }
  pg_clear(res);
  pending_free(L, p);
}

static void settle(lua_State *L, PGconn *rec) {
  for (;;) {                                      /* oldest first */
    struct Pending *p = NULL;
    for (int i = 0; i < MAX_DEFERRED; i++)
      if (pending[i].rec == rec && rec && (p == NULL || pending[i].sent.seq < p->sent.seq)) p = &pending[i];
    if (p == NULL) return;
    settle_one(L, p);
  }
}

/* Sends run's finish (sql, vals) without waiting for its result; returns
 * the pending slot, or NULL (nothing sent) when it cannot be. */
static struct Pending *send_pending(Run *run, const char *sql, int n, const char **vals) {
  struct Pending *p = NULL;
  for (int i = 0; i < MAX_DEFERRED && p == NULL; i++) if (pending[i].rec == NULL) p = &pending[i];
  if (p == NULL) return NULL;
  for (int i = 0; i < N_FINISH_VALS; i++) {
    p->vals[i] = vals[i] ? strdup(vals[i]) : NULL;
    if (vals[i] && p->vals[i] == NULL) goto fail;
  }
  if (!pg_send_deferred(run->rec, sql, n, vals)) goto fail;
  p->run = *run;
  p->rec = run->rec;
  p->ref = LUA_NOREF;
  p->sent = (Sent){ .seq = ++sent_seq };
  return p;
fail:
  for (int i = 0; i < N_FINISH_VALS; i++) { free(p->vals[i]); p->vals[i] = NULL; }
  return NULL;
}

/* settle(rec): reads the result of the finish pending on rec, if any. */
static int l_settle(lua_State *L) {
  settle(L, mv_toconn(L, 1));
  return 0;
}

/* flush(rec) -> true: makes the deferred finishes on rec durable: one
 * synchronous commit that writes WAL (the last deferred run row written
 * again as it is), which flushes everything before it. Returns false with
 * the error when it fails. */
static int l_flush(lua_State *L) {
  PGconn *rec = mv_checkconn(L, 1);
  settle(L, rec);
  struct Ahead *a = ahead_of(rec);
  if (a) withdraw(a);                             /* the batch ended before the run it began ahead */
  for (int i = 0; i < MAX_DEFERRED; i++) {
    if (deferred[i].rec != rec) continue;
    char id[32], sql[160];
    const char *vals[1] = {id};
    snprintf(id, sizeof id, "%lld", deferred[i].run_id);
    snprintf(sql, sizeof sql, "UPDATE %s SET updated_at = updated_at WHERE id = $1", RUN_TABLES[deferred[i].op]);
    deferred[i].rec = NULL;
    PGresult *res = pg_exec(rec, sql, 1, vals);
    int ok = pg_ok(res);
    if (!ok) lua_pushstring(L, pg_errmsg(rec, res));
    pg_clear(res);
    if (!ok) { lua_pushboolean(L, 0); lua_insert(L, -2); return 2; }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* The finish of a run inside a batch (outcome.pipelined): sent without
 * waiting for its result, which the recorder's next statement reads first
 * (settle: the next run's begin, recorder.flush at the end of the batch),
 * so that the server writes the row while this process goes on to the
 * next view. Called with signals blocked (old: the mask to restore) and
 * the guard on top; on success restores the mask, replaces the guard by
 * the run table (its timestamps come with the result) and returns 1;
 * returns 0, having sent nothing, when the finish must run as usual. */
static int finish_pipelined(lua_State *L, Run *run, const char **vals, int meta, const sigset_t *old) {
  char sql[1600];
  settle(L, run->rec);                            /* the last run's finish, read long ago: its row filled in */
  finish_sql(run, sql, sizeof sql);
  struct Pending *p = send_pending(run, sql, finish_nparams(run), vals);
  if (p == NULL) return 0;
  PGconn *rec = run->rec;
  unwatch(run);
  note_deferred(run, 1);
  run->locked = 0;
  run->rec = NULL;
  sigprocmask(SIG_SETMASK, old, NULL);
  push_run(L, run, NULL, meta, vals, rec);        /* [guard run] */
  lua_pushvalue(L, -1);
  p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_remove(L, -2);
  return 1;
}

/* Finalises run with the outcome {status, error, meta, rows_count} at idx
 * (SIGINT blocked while it is written). Pushes the run table and returns 1;
 * on failure writes the outcome on stderr, pushes the error message and
 * returns 0. */
static int finish(lua_State *L, Run *run, int outcome) {
  char id[32], status[4], dur[32], rows[32], why[1024], lockname[256], lockschema[256];
  sigset_t old;
  settle(L, run->rec);                            /* the finishes before it, written again if they failed */
  run->unconfirmed = 0;
  lua_getfield(L, outcome, "status");
  int ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), STATUS_NAMES[MV_RUN_SUCCESS]) == 0;
  lua_getfield(L, outcome, "error");
  const char *err = ok ? NULL : lua_isstring(L, -1) ? lua_tostring(L, -1) : "the job failed";
  lua_getfield(L, outcome, "rows_count");
  int has_rows = lua_isinteger(L, -1);
  if (has_rows) snprintf(rows, sizeof rows, "%lld", (long long)lua_tointeger(L, -1));
  lua_getfield(L, outcome, "defer_flush");
  int defer = lua_toboolean(L, -1);
  lua_getfield(L, outcome, "pipelined");
  int pipelined = defer && lua_toboolean(L, -1);
  lua_getfield(L, outcome, "meta");
  int meta = lua_istable(L, -1) ? lua_gettop(L) : 0;
  const char *json = meta ? push_json(L, meta) : (lua_pushliteral(L, "{}"), lua_tostring(L, -1));
  snprintf(id, sizeof id, "%lld", run->run_id);
  snprintf(status, sizeof status, "%d", ok ? MV_RUN_SUCCESS : MV_RUN_FAILED);
  lua_getfield(L, outcome, "ended_ms");          /* when the job's work ended (a run finished later) */
  double ended = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : now_ms();
  snprintf(dur, sizeof dur, "%lld", (long long)(ended - run->t0 + 0.5));
  snprintf(lockname, sizeof lockname, "%s", run->name);
  snprintf(lockschema, sizeof lockschema, "%s", run->schema);
  const char *vals[9] = {id, status, dur, json, err, NULL, NULL, NULL, NULL};
  const char *sync = defer ? "off" : NULL;        /* NULL: the session's synchronous_commit */
  if (run->op == MV_OP_REFRESH) { vals[5] = has_rows ? rows : NULL; vals[6] = sync; vals[7] = lockschema; vals[8] = lockname; }
  else { vals[5] = sync; vals[6] = lockschema; vals[7] = lockname; }
  PGresult **res = pg_guard(L);                   /* [guard]: push_run allocates */
  block_signals(&old);
  if (pipelined && finish_pipelined(L, run, vals, meta, &old)) return 1;
  *res = finish_exec(run, vals, why, sizeof why);
  int written = pg_ok(*res);
  unwatch(run);
  if (!written) unlock_alone(run);
  run->locked = 0;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (written) {
    note_deferred(run, defer);
    run->rec = NULL;
    push_run(L, run, *res, meta, vals, NULL);     /* [guard run] */
    pg_guard_clear(res);
    lua_remove(L, -2);
    return 1;
  }
  pg_guard_clear(res);
  run->rec = NULL;
  report_unrecorded(run, why, STATUS_NAMES[ok ? MV_RUN_SUCCESS : MV_RUN_FAILED], dur, err);
  lua_pushfstring(L, "could not finalise run %s of %s: %s", id, run->name, why);
  return 0;
}

/* run:finish{ status = "success"|"failed", error, meta, rows_count [, ended_ms] } ->
 * the finalised run { id, op, view, status, started_at, finished_at,
 * duration_ms, rows_count, error, backend_pid, hostname, process_pid,
 * lock_wait_ms, meta }. Raises when the row cannot be written. */
static int l_finish(lua_State *L) {
  Run *run = check_run(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  if (run->rec == NULL) return luaL_error(L, "run %lld is already finished", run->run_id);
  if (finish(L, run, 2)) return 1;
  mv_error_push(L, lua_tostring(L, -1), NULL);
  return lua_error(L);
}

/* run:detach() -> a run object that takes this one over (this one is then
 * finished as far as Lua is concerned: its __close does nothing), for a
 * caller that finishes the run after the job's scope ended (jobs.start). */
static int l_detach(lua_State *L) {
  Run *run = check_run(L, 1);
  Run *to = lua_newuserdatauv(L, sizeof(Run), 1);
  *to = *run;
  luaL_setmetatable(L, RUN_MT);
  lua_getiuservalue(L, 1, 1);
  lua_setiuservalue(L, -2, 1);
  run->rec = NULL;
  run->locked = 0;
  return 1;
}

/* __close(run, err) and __gc: a run the job did not finish is finished
 * as failed with the error that unwound the job; never raises. */
static int l_close(lua_State *L) {
  Run *run = check_run(L, 1);
  if (run->rec == NULL) return 0;
  const char *msg = NULL;
  if (lua_type(L, 2) == LUA_TTABLE) { lua_getfield(L, 2, "message"); msg = lua_tostring(L, -1); }
  else if (lua_type(L, 2) == LUA_TSTRING) msg = lua_tostring(L, 2);
  lua_createtable(L, 0, 3);
  int outcome = lua_gettop(L);
  lua_pushstring(L, STATUS_NAMES[MV_RUN_FAILED]); lua_setfield(L, outcome, "status");
  lua_pushstring(L, msg ? msg : "the job ended before its run was finished"); lua_setfield(L, outcome, "error");
  lua_createtable(L, 0, 2);
  lua_pushstring(L, run->name); lua_setfield(L, -2, "view");
  lua_pushvalue(L, -2); lua_getfield(L, -1, "error"); lua_remove(L, -2);
  lua_setfield(L, -2, "error");
  lua_setfield(L, outcome, "meta");
  finish(L, run, outcome);
  return 0;
}

/* now_iso() -> the wall clock as ISO 8601 UTC with microseconds. The
 * date and time up to the second are formatted once per second (a job
 * asks twice per attempt), the microseconds written after them. */
static int l_now_iso(lua_State *L) {
  static time_t second = (time_t)-1;
  static char buf[48];
  static size_t n;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != second) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, sizeof buf - 9, "%Y-%m-%dT%H:%M:%S", &tm);
    second = ts.tv_sec;
  }
  long us = ts.tv_nsec / 1000;
  buf[n] = '.';
  for (int i = 6; i >= 1; i--, us /= 10) buf[n + (size_t)i] = (char)('0' + us % 10);
  buf[n + 7] = 'Z';
  lua_pushlstring(L, buf, n + 8);
  return 1;
}

/* want_timeouts(conn, lock_timeout, statement_timeout, keep_caller) and
 * restore_timeouts(conn): see pg_want_timeouts. */
static int l_want_timeouts(lua_State *L) {
  PGconn *c = mv_checkconn(L, 1);
  pg_want_timeouts(c, luaL_checkstring(L, 2), luaL_optstring(L, 3, NULL), lua_toboolean(L, 4));
  return 0;
}

static int l_restore_timeouts(lua_State *L) {
  PGconn *c = mv_toconn(L, 1);
  if (c) pg_restore_timeouts(c);
  return 0;
}

/* hold() -> previous: SIGINT outside a statement is kept pending instead
 * of raising at the next Lua instruction; release(previous) -> whether one
 * arrived (cleared unless an outer hold remains); pending([clear]) ->
 * whether one is pending. */
static int l_hold(lua_State *L) { lua_pushboolean(L, mv_interrupt_hold(1)); return 1; }
static int l_release(lua_State *L) {
  mv_interrupt_hold(lua_toboolean(L, 1));
  lua_pushboolean(L, mv_interrupt_pending(!lua_toboolean(L, 1)));
  return 1;
}
static int l_pending(lua_State *L) { lua_pushboolean(L, mv_interrupt_pending(lua_toboolean(L, 1))); return 1; }

/* sleep(ms) -> false when SIGINT ended it early. */
static int l_sleep(lua_State *L) {
  double until = now_ms() + (double)luaL_checkinteger(L, 1);
  while (!mv_interrupt_pending(0) && !mv_query_interrupted()) {
    mv_ahead_due();                               /* a backoff is long: the next run is begun again later */
    double left = until - now_ms();
    if (left <= 0) { lua_pushboolean(L, 1); return 1; }
    sleep_ms(left > 100 ? 100 : (long)left + 1);
  }
  lua_pushboolean(L, 0);
  return 1;
}

static const luaL_Reg run_methods[] = {
  {"lock", l_lock}, {"confirm", l_confirm}, {"regain", l_regain}, {"watch", l_watch}, {"info", l_info}, {"finish", l_finish}, {"detach", l_detach}, {NULL, NULL}
};

static const luaL_Reg recorder_funcs[] = {
  {"begin", l_begin}, {"begin_ahead", l_begin_ahead}, {"flush", l_flush}, {"settle", l_settle}, {"now_iso", l_now_iso}, {"want_timeouts", l_want_timeouts},
  {"restore_timeouts", l_restore_timeouts}, {"hold", l_hold}, {"release", l_release},
  {"pending", l_pending}, {"sleep", l_sleep}, {NULL, NULL}
};

/* Registers core.recorder in the core table at -1. */
void mv_register_recorder(lua_State *L) {
  if (luaL_newmetatable(L, RUN_MT)) {
    luaL_newlib(L, run_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close); lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_close); lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, recorder_funcs);
  lua_setfield(L, -2, "recorder");
}
