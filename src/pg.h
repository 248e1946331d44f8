/*
 * pg.h: the one unit that talks to libpq. Every statement matviews runs goes
 * through pg_exec (parameters as $n text values, cancel on SIGINT); results
 * are read through the accessors here and converted to Lua by pg_push_rows.
 * Memory: a PGresult returned to a caller is the caller's, freed with
 * pg_clear; strings from pg_quote_ident are freed with pg_free.
 */
#ifndef MV_PG_H
#define MV_PG_H
#include <stddef.h>
#include <libpq-fe.h>
#include <lua.h>

#define SQLSTATE_QUERY_CANCELED      "57014"
#define SQLSTATE_LOCK_NOT_AVAILABLE  "55P03"
#define SQLSTATE_UNDEFINED_TABLE     "42P01"
#define SQLSTATE_INSUFFICIENT_PRIV   "42501"

/* Connects; on failure returns NULL and writes one line naming host and port
 * (never the password) into err. */
PGconn *pg_open(const char *conninfo, char *err, size_t errlen);
void pg_close(PGconn *conn);
/* Opens a new connection with the parameters conn was opened with (same
 * server, database, user, password); NULL and a line in err on failure. */
PGconn *pg_open_like(PGconn *conn, char *err, size_t errlen);
/* pg_open_like without waiting: the connection is under way (its startup
 * packet sent when the socket allows), so that the server starts its
 * backend while this process does other work; *state keeps where it is.
 * NULL when it could not even start (open it with pg_open_like then). */
PGconn *pg_open_like_start(PGconn *conn, int *state);
/* The same for pg_open: NULL when it could not start (pg_open says why). */
PGconn *pg_open_start(const char *conninfo, int *state);
/* Completes a connection pg_open_like_start or pg_open_start began (its session set up as
 * pg_open's): 1 when it is usable; 0 when it failed (the caller closes it
 * and opens one with pg_open_like, which waits for a slot and says why). */
int pg_open_finish(PGconn *c, int *state);
/* 1 while the connection is usable, 0 once it is lost (CONNECTION_BAD). */
int pg_connected(PGconn *conn);
/* pg_connected, after reading (without waiting) what the server sent:
 * false once the session is known to have ended. */
int pg_alive(PGconn *conn);
/* Reconnects conn in place (PQreset) with the same parameters; 1 when it
 * is usable again. What pg_want_timeouts knew of its session is forgotten. */
int pg_reset(PGconn *conn);
/* How long opening a connection waits while the server has no free slot
 * (default 30 s; 0: fail at once). */
void pg_set_slot_wait(long ms);
/* Whether a connection error message says the server has no free slot. */
int pg_slot_refusal(const char *msg);

/* The lock_timeout and statement_timeout (PostgreSQL interval texts;
 * statement_timeout NULL: leave it) that conn's session must have before
 * its next statement. They are sent only when they differ from what the
 * session has, in the same round trip as that statement (pipeline mode),
 * so a run of jobs with the same timeouts sets them once per connection.
 * keep_caller: the session is a caller's; its own values are read in that
 * same statement, and pg_restore_timeouts puts them back (again with the
 * next statement, so back-to-back jobs cost nothing). */
void pg_want_timeouts(PGconn *conn, const char *lock_timeout, const char *statement_timeout, int keep_caller);
void pg_restore_timeouts(PGconn *conn);

/* While a job's service runs: holder is the session that holds the job's
 * lock, conn the service's. A statement waited for on conn is cancelled
 * when holder's session dies, and pg_watch_lost() then returns 1. NULL
 * stops. */
void pg_watch(PGconn *holder, PGconn *conn);
int pg_watch_lost(void);

/* Runs sql with n text parameters (NULL entries are SQL NULL). Waits in a
 * poll loop so SIGINT sends PQcancel. Returns the last result, never NULL
 * (a libpq failure becomes a PGRES_FATAL_ERROR result). */
PGresult *pg_exec(PGconn *conn, const char *sql, int n, const char *const *vals);
/* One statement of a pipeline: sql with n text parameters; sync = 1 ends
 * the implicit transaction after it (the last step always does). */
typedef struct {
  const char *sql;
  int n;
  const char *const *vals;
  int sync;
  int prepared;       /* matviews's own fixed SQL: run as a prepared statement (see pg_exec_prepared) */
  long long *done_ms; /* when not NULL: set to the monotonic ms at which the step's result was read */
} PgStep;
#define PG_MAX_STEPS 8
/* Sends the n steps in one round trip (libpq pipeline mode) and fills
 * res[i] with each step's result (the caller clears them; never NULL: a
 * step skipped because an earlier one of its transaction failed has a
 * PGRES_PIPELINE_ABORTED result, one lost with the connection a fatal
 * one). The steps between two syncs are one transaction. The session's
 * timeouts (pg_want_timeouts) are set first, in a transaction of their
 * own; when that fails, res[0] holds its error. Cancels on SIGINT like
 * pg_exec. A pipeline of one transaction whose prepared statement was
 * deallocated meanwhile is sent again unprepared. Returns 0 when every
 * step succeeded, else -1. */
int pg_pipeline(PGconn *conn, const PgStep *steps, int n, PGresult **res);
/* pg_pipeline in two halves, so that the caller works while the server
 * runs the steps: pg_pipeline_send sends them and returns at once (NULL
 * when out of memory: nothing sent); pg_pipeline_collect reads their
 * results as pg_pipeline would (SIGINT during the whole span cancels them)
 * and frees the handle. The steps (texts, values) stay the caller's until
 * then, and nothing else may be sent on conn in between (other
 * connections may be used). */
typedef struct PgPipe PgPipe;
PgPipe *pg_pipeline_send(PGconn *conn, const PgStep *steps, int n);
int pg_pipeline_collect(PgPipe *p, PGresult **res);
/* Forgets a pipeline sent whose connection was closed meanwhile. */
void pg_pipeline_drop(PgPipe *p);
/* pg_exec for matviews's own fixed statements on its own connections (the
 * recorder's begin and finish): prepared once per session, the first time
 * in the same round trip, then executed by name, so the server neither
 * parses nor (after a few runs) plans them again. A statement that was
 * deallocated meanwhile runs unnamed. */
PGresult *pg_exec_prepared(PGconn *conn, const char *sql, int n, const char *const *vals);
/* For matviews's own fixed statements on its own connections (a batch's
 * run finish): sends sql (prepared as pg_exec_prepared does) in pipeline
 * mode and returns at once, so the server runs it while this process goes
 * on. Its result is read by pg_deferred_take, or before the next
 * statement on conn (any pg_* call that sends, pg_reset, pg_close) and
 * kept until taken. Two may be outstanding at once (a batch's next begin
 * sent ahead, then the last run's finish): their results are taken in the
 * order they were sent. Returns 0, having sent nothing, when it cannot
 * (two are outstanding, timeouts are due, a transaction is open, the
 * connection is lost): the caller then runs the statement as usual. */
int pg_send_deferred(PGconn *conn, const char *sql, int n, const char *const *vals);
/* Until at_ms (CLOCK_MONOTONIC), fn is called once when a wait on a
 * connection other than exempt passes at_ms (the recorder's runs begun
 * ahead: the statement waited for runs long). fn NULL: none. */
void pg_wait_deadline(double at_ms, void (*fn)(void), PGconn *exempt);
/* The result of the oldest statement pg_send_deferred sent on conn and not
 * taken yet (waited for when not read yet; the caller clears it), or NULL
 * when none is pending
 * (or conn was reset or closed meanwhile, which read and dropped it). */
PGresult *pg_deferred_take(PGconn *conn);
/* Runs several statements with no parameters (simple protocol): only for
 * SQL matviews itself ships (schema steps), never for user values. */
PGresult *pg_exec_script(PGconn *conn, const char *sql);
/* Prepares sql as the unnamed statement (parsed and analysed by the
 * server, never run; the next statement replaces it) and describes it:
 * the result has its columns (pg_ncols, pg_colname, pg_coltype) and no
 * rows. Never NULL; a failure is a PGRES_FATAL_ERROR result. */
PGresult *pg_describe(PGconn *conn, const char *sql);
/* 1 when the result is a success (command or tuples), 0 otherwise. */
int pg_ok(const PGresult *res);
void pg_clear(PGresult *res);

int pg_nrows(const PGresult *res);
int pg_ncols(const PGresult *res);
const char *pg_value(const PGresult *res, int row, int col); /* NULL for SQL NULL */
const char *pg_colname(const PGresult *res, int col);
unsigned int pg_coltype(const PGresult *res, int col); /* the column's type oid */
long long pg_affected(const PGresult *res);
const char *pg_sqlstate(const PGresult *res);   /* may be NULL */
/* A diagnostic field (PG_DIAG_*) of a result, or NULL. */
const char *pg_errfield(const PGresult *res, int code);
/* The primary error message of a failed result, or the first line of the
 * connection's (a static buffer, valid until the next call). */
const char *pg_errmsg(PGconn *conn, const PGresult *res);

/* Identifier quoting through PQescapeIdentifier; NULL on failure. */
char *pg_quote_ident(PGconn *conn, const char *name);
/* Literal quoting through PQescapeLiteral (for utility statements such as
 * COMMENT, which take no parameters); NULL on failure. */
char *pg_quote_literal(PGconn *conn, const char *value);
void pg_free(void *p);
int pg_in_transaction(PGconn *conn);
int pg_backend_pid(PGconn *conn);
const char *pg_host(PGconn *conn);
const char *pg_port(PGconn *conn);
const char *pg_db(PGconn *conn);
const char *pg_user(PGconn *conn);

/* Lua side: push rows of a tuples result as an array of tables keyed by
 * column name, values converted by type (see pg.c). The array's metatable
 * holds `columns`, the column names in select order. */
void pg_push_rows(lua_State *L, const PGresult *res);
/* Push an error table {message, sqlstate, detail, hint, position}. */
void pg_push_error(lua_State *L, PGconn *conn, const PGresult *res);
/* A PGresult held while Lua allocates (converting rows, building an error
 * table) must not leak when Lua raises a memory error: pg_guard pushes a
 * userdata slot (NULL) whose __gc clears what it holds; store the result in
 * it, convert, then pg_guard_clear it. Push the guard before pg_exec, so
 * pushing it cannot fail while a result is already held. */
PGresult **pg_guard(lua_State *L);
void pg_guard_clear(PGresult **slot);


/* 1 when a server accepts connections at conninfo (PQping). */
int pg_ping(const char *conninfo);
#endif
