/*
 * pg.c: the only unit that calls libpq (see pg.h). Statements are sent with
 * PQsendQueryParams and awaited in a poll loop, so that SIGINT (noticed via
 * interrupt.c) becomes a PQcancel and the statement fails with 57014.
 *
 * Type conversion to Lua: int2/int4/int8/oid -> integer; float4/float8 ->
 * number; numeric -> integer when integral and within 64 bits, number when it
 * has at most 15 significant digits (exact in a double), else its exact text;
 * bool -> boolean; SQL NULL -> mv.null (light userdata NULL, = cjson.null);
 * everything else -> text.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <ctype.h>
#include <lauxlib.h>
#include "ticker.h"
#include "pg.h"
#include "errors.h"
#include "interrupt.h"

#define BOOLOID    16
#define INT8OID    20
#define INT2OID    21
#define INT4OID    23
#define OIDOID     26
#define FLOAT4OID  700
#define FLOAT8OID  701
#define NUMERICOID 1700

/* Copies the first line of msg into out, replacing the password (when one is
 * known) and anything libpq quoted from the connection string, without the
 * server's severity ("FATAL:  "). */
static void one_line(char *out, size_t outlen, const char *msg, const char *pw) {
  size_t j = 0;
  const char *p = msg;
  const char *eol = strchr(msg, '\n');
  const char *fail = strstr(msg, "failed: ");
  if (fail != NULL && (eol == NULL || fail < eol))
    p = fail + 8; /* drop libpq's "connection to server ... failed: " */
  if (strncmp(p, "FATAL:  ", 8) == 0 || strncmp(p, "ERROR:  ", 8) == 0) p += 8;
  for (; *p && *p != '\n' && j + 4 < outlen; p++) {
    if (pw != NULL && *pw && strncmp(p, pw, strlen(pw)) == 0) {
      memcpy(out + j, "***", 3);
      j += 3;
      p += strlen(pw) - 1;
      continue;
    }
    out[j++] = *p;
  }
  out[j] = '\0';
}

/* Extracts the password a conninfo names, if it parses; caller frees. */
static char *conninfo_password(const char *conninfo) {
  char *err = NULL;
  char *pw = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
  if (err) PQfreemem(err);
  if (opts == NULL) return NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
      pw = strdup(o->val);
  PQconninfoFree(opts);
  return pw;
}

/* Server notices (e.g. "does not exist, skipping") are not for the user's
 * terminal: matviews reports outcomes itself. */
static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* Session settings a job asks for on a connection (lock_timeout and
 * statement_timeout), sent only when they differ from what the session has,
 * and then in the same round trip as the next statement (pipeline mode):
 * a run of jobs with the same timeouts sets them once per connection. On a
 * caller's connection the caller's own values are read in that same
 * statement and put back before the caller's next statement. */
#define MAX_PREPARED 16
#define MAX_DEFERRED_STMTS 2 /* a batch's next begin sent ahead, then the last finish */

typedef struct {
  PGconn *conn;                /* NULL: free slot */
  char want[2][32];            /* values to be in effect before the next statement */
  char have[2][32];            /* values in effect ("" unknown) */
  char saved[2][32];           /* the caller's values, when keep_caller */
  int capture;                 /* read the caller's values with the next set */
  int restore;                 /* saved holds values to put back */
  unsigned long long prepared[MAX_PREPARED]; /* pg_exec_prepared: statements prepared on it (hashes) */
  int n_prepared;
  /* pg_send_deferred: statements sent, results not read yet (oldest
   * first; MAX_DEFERRED_STMTS in all, read or not, until taken) */
  int deferred;
  struct { int prepare; unsigned long long hash; } sent[MAX_DEFERRED_STMTS]; /* ... with its Parse? its hash */
  PGresult *deferred_res[MAX_DEFERRED_STMTS]; /* results read, oldest first, until pg_deferred_take */
  int n_res;
} Session;

#define MAX_SESSIONS 256
static Session sessions[MAX_SESSIONS];

/* The slot of conn, or a new one (create), or NULL. */
static Session *session_of(PGconn *conn, int create) {
  Session *free_slot = NULL;
  for (int i = 0; i < MAX_SESSIONS; i++) {
    if (sessions[i].conn == conn) return &sessions[i];
    if (sessions[i].conn == NULL && free_slot == NULL) free_slot = &sessions[i];
  }
  if (!create || free_slot == NULL) return NULL;
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->conn = conn;
  return free_slot;
}

/* Forgets what is known of conn's session (closed, or reset). */
static void session_forget(PGconn *conn) {
  Session *s = session_of(conn, 0);
  if (s) { for (int i = 0; i < s->n_res; i++) PQclear(s->deferred_res[i]); memset(s, 0, sizeof *s); }
}

static void settle_deferred(PGconn *conn);
static long long monotonic_ms(void);

static double deadline_at;               /* see pg_wait_deadline */
static void (*deadline_fn)(void);
static PGconn *deadline_exempt;

static PGconn *open_pipe = NULL;          /* see pg_pipeline_send */
static PGconn *watched = NULL;            /* see pg_watch */
static PGconn *guarded = NULL;
static int watch_lost = 0;

/* Sets up a new session: notices ignored, and (PostgreSQL 14 and later)
 * the three settings below, in one statement (one round trip, and
 * current_setting rather than a scan of pg_settings: this runs on every
 * connection a run opens). When it fails (a server that refuses
 * client_connection_check_interval), the settings are made one statement
 * each, so that the others still hold.
 * - client_connection_check_interval, unless the user chose a value: when
 *   this process dies mid-statement its backend stops within a second,
 *   even while it waits for a lock, and rolls back instead of holding
 *   locks that queue every reader of the view.
 * - idle_session_timeout 0: the sessions matviews holds sit idle by
 *   design (the recorder while the service connection refreshes for
 *   minutes, a worker between polls, the lock session for the whole run);
 *   a server-wide idle_session_timeout would end them and lose the run's
 *   outcome or its lock, so they never end for idleness.
 * - idle_in_transaction_session_timeout: our transactions are never left
 *   idle on purpose, but a loaded client may pause between two
 *   statements: a very short one (1 ms to 5 minutes) is raised to 5
 *   minutes (a dead client is caught by the check above instead). */
#define CHECK_INTERVAL_SQL \
  "set_config('client_connection_check_interval', '1000', false)"
#define IDLE_SQL \
  "set_config('idle_session_timeout', '0', false), set_config('idle_in_transaction_session_timeout'," \
  " CASE WHEN extract(epoch FROM current_setting('idle_in_transaction_session_timeout')::interval) * 1000" \
  " BETWEEN 1 AND 299999 THEN '300000' ELSE current_setting('idle_in_transaction_session_timeout') END, false)"
#define CHECK_UNSET_SQL "current_setting('client_connection_check_interval') = '0'"

static void session_setup(PGconn *conn) {
  PQsetNoticeProcessor(conn, ignore_notice, NULL);
  if (PQserverVersion(conn) < 140000) return;
  PGresult *r = pg_exec(conn, "SELECT CASE WHEN " CHECK_UNSET_SQL " THEN " CHECK_INTERVAL_SQL " END, " IDLE_SQL, 0, NULL);
  int ok = pg_ok(r);
  pg_clear(r);
  if (ok || !pg_connected(conn)) return;
  pg_clear(pg_exec(conn, "SELECT " CHECK_INTERVAL_SQL " WHERE " CHECK_UNSET_SQL, 0, NULL));
  pg_clear(pg_exec(conn, "SELECT " IDLE_SQL, 0, NULL));
}

/* How long a connection refused for lack of slots is tried again
 * (pg_set_slot_wait: connect_wait_ms of the configuration; a parallel
 * refresh's workers do not wait). */
#define SLOT_WAIT_MS 30000
static long slot_wait_ms = SLOT_WAIT_MS;

void pg_set_slot_wait(long ms) { slot_wait_ms = ms < 0 ? 0 : ms; }

/* Whether msg is the server refusing for lack of connection slots
 * (max_connections, a role's or database's CONNECTION LIMIT; SQLSTATE
 * 53300, which libpq gives only as text). */
int pg_slot_refusal(const char *msg) {
  return msg != NULL && (strstr(msg, "too many clients") || strstr(msg, "too many connections")
                         || strstr(msg, "remaining connection slots"));
}

/* The server refused c for lack of slots: a burst of parallel jobs should
 * wait for a slot, not fail. */
static int refused_for_slots(PGconn *c) {
  return PQstatus(c) != CONNECTION_OK && pg_slot_refusal(c ? PQerrorMessage(c) : "");
}

/* Connects with keys/vals (conninfo when keys is NULL), trying again with
 * backoff (50 ms doubling to 2 s, slot_wait_ms in all) while the server
 * refuses for lack of slots, said once on stderr in the life of the
 * process (a batch of views waiting in turn says it once); a
 * SIGINT/SIGTERM ends the wait. Returns the last attempt (NULL: out of
 * memory). */
static PGconn *connect_waiting(const char *conninfo, const char *const *keys, const char *const *vals) {
  static int said;
  long wait = 50, waited = 0;
  for (;;) {
    PGconn *c = keys ? PQconnectdbParams(keys, vals, 0) : PQconnectdb(conninfo);
    if (!refused_for_slots(c) || waited >= slot_wait_ms || mv_stop_signal()) return c;
    if (!said) {
      said = 1;
      fprintf(stderr, "matviews: the server has no free connection slot; trying again for up to %ld %s\n",
              slot_wait_ms % 1000 ? slot_wait_ms : slot_wait_ms / 1000, slot_wait_ms % 1000 ? "ms" : "s");
      fflush(stderr);
    }
    PQfinish(c);
    struct timespec ts = { wait / 1000, (wait % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    waited += wait;
    wait = wait * 2 > 2000 ? 2000 : wait * 2;
  }
}

PGconn *pg_open(const char *conninfo, char *err, size_t errlen) {
  char *perr = NULL;
  char line[512];
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (opts == NULL) {
    /* libpq quotes fragments of the string, which may hold the password */
    snprintf(err, errlen, "invalid connection string: %s",
             perr ? (strstr(perr, "missing \"=\"") ? "missing \"=\" after a keyword"
                     : strstr(perr, "invalid connection option") ? "unknown connection option"
                     : strstr(perr, "URI") ? "malformed URI" : "could not parse it")
                  : "out of memory");
    if (perr) PQfreemem(perr);
    return NULL;
  }
  PQconninfoFree(opts);
  PGconn *conn = connect_waiting(conninfo, NULL, NULL);
  if (conn == NULL) {
    snprintf(err, errlen, "out of memory while connecting");
    return NULL;
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    char *pw = conninfo_password(conninfo);
    const char *host = PQhost(conn), *port = PQport(conn);
    one_line(line, sizeof line, PQerrorMessage(conn), pw);
    snprintf(err, errlen, "could not connect to host %s port %s: %s",
             host && *host ? host : "localhost", port && *port ? port : "5432", line);
    free(pw);
    PQfinish(conn);
    return NULL;
  }
  session_setup(conn);
  return conn;
}

void pg_close(PGconn *conn) {
  if (conn == NULL) return;
  settle_deferred(conn);
  session_forget(conn);
  if (watched == conn || guarded == conn) watched = guarded = NULL;
  PQfinish(conn);
}

int pg_reset(PGconn *conn) {
  settle_deferred(conn);
  session_forget(conn);
  PQreset(conn);
  if (PQstatus(conn) != CONNECTION_OK) return 0;
  session_setup(conn);
  return 1;
}

/* Copies setting value v into a want/have slot (cut to fit, as snprintf
 * would; a job asks for its timeouts twice a run). */
static void set_value(char out[32], const char *v) {
  size_t n = strnlen(v, 31);
  memcpy(out, v, n);
  out[n] = '\0';
}

void pg_want_timeouts(PGconn *conn, const char *lock_timeout, const char *statement_timeout, int keep_caller) {
  Session *s = session_of(conn, 1);
  if (s == NULL) { /* no slot left: set now, without caching */
    const char *v[2] = {lock_timeout, statement_timeout};
    pg_clear(pg_exec(conn, "SELECT set_config('lock_timeout', $1, false),"
                     " set_config('statement_timeout', coalesce($2, current_setting('statement_timeout')), false)", 2, v));
    return;
  }
  if (keep_caller && !s->restore) { s->capture = 1; s->restore = 1; }
  set_value(s->want[0], lock_timeout);
  /* "" (NULL given): the session keeps its own (the server's, role's, database's) */
  set_value(s->want[1], statement_timeout ? statement_timeout : "");
}

void pg_restore_timeouts(PGconn *conn) {
  Session *s = session_of(conn, 0);
  if (s == NULL || !s->restore) return;
  if (s->capture) { s->capture = 0; s->restore = 0; s->want[0][0] = '\0'; return; } /* nothing was sent */
  memcpy(s->want, s->saved, sizeof s->want);
}

void pg_watch(PGconn *holder, PGconn *conn) { watched = holder; guarded = conn; watch_lost = 0; }

void pg_wait_deadline(double at_ms, void (*fn)(void), PGconn *exempt) {
  deadline_at = fn ? at_ms : 0;
  deadline_fn = fn;
  deadline_exempt = exempt;
}

/* CLOCK_MONOTONIC in milliseconds. */
static long long monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The poll timeout while waiting on conn (200 ms, or less when a
 * pg_wait_deadline falls sooner); calls the deadline's function (once)
 * when it has passed. */
static int wait_timeout(PGconn *conn) {
  if (deadline_fn == NULL || conn == deadline_exempt) return 200;
  double left = deadline_at - (double)monotonic_ms();
  if (left > 0) return left >= 200 ? 200 : (int)left + 1;
  void (*fn)(void) = deadline_fn;
  deadline_fn = NULL;                     /* before it runs: it may wait on other connections */
  fn();
  return 200;
}
int pg_watch_lost(void) { return watch_lost; }

/* The parameters conn was opened with, as keys and vals (NULL-ended, at
 * most 63), pointing into the returned options (caller frees them with
 * PQconninfoFree); NULL when out of memory. */
static PQconninfoOption *params_of(PGconn *conn, const char **keys, const char **vals) {
  PQconninfoOption *opts = PQconninfo(conn);
  int n = 0;
  if (opts == NULL) return NULL;
  for (PQconninfoOption *o = opts; o->keyword && n < 63; o++)
    if (o->val != NULL && *o->val) { keys[n] = o->keyword; vals[n] = o->val; n++; }
  keys[n] = vals[n] = NULL;
  return opts;
}

PGconn *pg_open_like(PGconn *conn, char *err, size_t errlen) {
  const char *keys[64], *vals[64];
  PQconninfoOption *opts = params_of(conn, keys, vals);
  if (opts == NULL) { snprintf(err, errlen, "out of memory while connecting"); return NULL; }
  PGconn *c = connect_waiting(NULL, keys, vals);
  PQconninfoFree(opts);
  if (c == NULL) { snprintf(err, errlen, "out of memory while connecting"); return NULL; }
  if (PQstatus(c) != CONNECTION_OK) {
    char line[512];
    one_line(line, sizeof line, PQerrorMessage(c), NULL);
    snprintf(err, errlen, "could not connect to host %s port %s: %s",
             PQhost(conn) ? PQhost(conn) : "localhost", PQport(conn) ? PQport(conn) : "5432", line);
    PQfinish(c);
    return NULL;
  }
  session_setup(c);
  return c;
}

/* Drives the connection c under way one step at a time while its socket
 * is ready, waiting at most wait_ms (-1: until it is done) for each;
 * *last is PQconnectPoll's last answer (PGRES_POLLING_WRITING before the
 * first). Returns *last: OK or FAILED once it is done. */
static PostgresPollingStatusType connect_steps(PGconn *c, PostgresPollingStatusType *last, int wait_ms) {
  while (*last == PGRES_POLLING_READING || *last == PGRES_POLLING_WRITING) {
    struct pollfd pfd = { PQsocket(c), *last == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0 };
    if (pfd.fd < 0) { *last = PGRES_POLLING_FAILED; break; }
    int rc = poll(&pfd, 1, wait_ms);
    if (rc < 0 && errno != EINTR) { *last = PGRES_POLLING_FAILED; break; }
    if (rc <= 0 && wait_ms >= 0) break;      /* not ready yet: later */
    if (rc > 0) *last = PQconnectPoll(c);
  }
  return *last;
}

/* Starts c (PQconnectStart*'s result) without waiting; NULL when it could
 * not even start. */
static PGconn *start_steps(PGconn *c, int *state) {
  PostgresPollingStatusType last = PGRES_POLLING_WRITING;
  if (c == NULL || PQstatus(c) == CONNECTION_BAD || connect_steps(c, &last, 0) == PGRES_POLLING_FAILED) {
    PQfinish(c);
    return NULL;
  }
  *state = (int)last;
  return c;
}

PGconn *pg_open_like_start(PGconn *conn, int *state) {
  const char *keys[64], *vals[64];
  PQconninfoOption *opts = params_of(conn, keys, vals);
  if (opts == NULL) return NULL;
  PGconn *c = PQconnectStartParams(keys, vals, 0);
  PQconninfoFree(opts);
  return start_steps(c, state);
}

PGconn *pg_open_start(const char *conninfo, int *state) {
  PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
  if (opts == NULL) return NULL; /* pg_open says why */
  PQconninfoFree(opts);
  return start_steps(PQconnectStart(conninfo), state);
}

/* Seconds the connect_timeout of c allows (0: no limit). */
static int connect_timeout_of(PGconn *c) {
  int secs = 0;
  PQconninfoOption *opts = PQconninfo(c);
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (strcmp(o->keyword, "connect_timeout") == 0 && o->val) secs = atoi(o->val);
  PQconninfoFree(opts);
  return secs;
}

int pg_open_finish(PGconn *c, int *state) {
  PostgresPollingStatusType last = (PostgresPollingStatusType)*state;
  int secs = connect_timeout_of(c);
  long long deadline = secs > 0 ? monotonic_ms() + secs * 1000LL : 0;
  while (connect_steps(c, &last, 200) != PGRES_POLLING_OK && last != PGRES_POLLING_FAILED)
    if (deadline && monotonic_ms() > deadline) { last = PGRES_POLLING_FAILED; break; }
  *state = (int)last;
  if (last != PGRES_POLLING_OK || PQstatus(c) != CONNECTION_OK) return 0;
  session_setup(c);
  return 1;
}

int pg_connected(PGconn *conn) { return conn != NULL && PQstatus(conn) == CONNECTION_OK; }

int pg_alive(PGconn *conn) {
  return pg_connected(conn) && PQsocket(conn) >= 0 && PQconsumeInput(conn) && PQstatus(conn) == CONNECTION_OK;
}

/* Whether the watched connection (pg_watch) has died: its socket became
 * readable and reading it shows the session ended. */
static int watched_died(short revents) {
  if (!(revents & (POLLIN | POLLHUP | POLLERR))) return 0;
  if (!PQconsumeInput(watched) || PQstatus(watched) != CONNECTION_OK) return 1;
  return 0;
}

/* Sends PQcancel for the statement running on conn. */
static void send_cancel(PGconn *conn) {
  char buf[256];
  PGcancel *c = PQgetCancel(conn);
  if (c) { PQcancel(c, buf, sizeof buf); PQfreeCancel(c); }
}

/* Waits until the connection has a full result ready, cancelling the query
 * once if SIGINT arrives or the watched connection (pg_watch: the session
 * holding the job's lock) dies. Returns 0 when ready, -1 on a connection
 * error. */
static int wait_ready(PGconn *conn) {
  int cancelled = 0;
  while (PQisBusy(conn)) {
    struct pollfd pfd[2] = { { PQsocket(conn), POLLIN, 0 }, { -1, POLLIN, 0 } };
    int nfd = 1;
    if (pfd[0].fd < 0) return -1;
    if (watched != NULL && conn == guarded && !watch_lost && PQsocket(watched) >= 0) {
      pfd[1].fd = PQsocket(watched);
      nfd = 2;
    }
    int rc = poll(pfd, (nfds_t)nfd, wait_timeout(conn));
    if (rc < 0 && errno != EINTR) return -1;
    if (nfd == 2 && rc > 0 && watched_died(pfd[1].revents)) watch_lost = 1;
    mv_ticker_poll();
    /* while a pipeline is sent and not collected (pg_pipeline_send), only
     * its own statements are what SIGINT cancels */
    int interrupted = mv_query_interrupted() && (open_pipe == NULL || conn == open_pipe);
    if (!cancelled && (interrupted || (watch_lost && conn == guarded))) {
      send_cancel(conn);
      cancelled = 1;
    }
    if (rc > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && !PQconsumeInput(conn)) return -1;
  }
  return 0;
}

/* Builds a fatal result carrying the connection's error message. */
static PGresult *fatal_result(PGconn *conn) {
  PGresult *r = PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
  return r;
}

/* Collects the results of the statement(s) just sent; keeps the first
 * error, else the last result. */
static PGresult *collect(PGconn *conn) {
  PGresult *last = NULL, *r;
  mv_query_begin();
  for (;;) {
    if (wait_ready(conn) < 0) {
      if (last) PQclear(last);
      last = fatal_result(conn);
      while ((r = PQgetResult(conn)) != NULL) PQclear(r); /* drain */
      break;
    }
    r = PQgetResult(conn);
    if (r == NULL) break;
    if (last && pg_ok(last) == 0) { PQclear(r); continue; }
    if (last) PQclear(last);
    last = r;
  }
  mv_query_end();
  return last ? last : fatal_result(conn);
}

/* The session settings statement due before the next one on conn, or
 * NULL: set (and, the first time on a caller's connection, read back the
 * caller's values first; the target list is evaluated in order). */
static const char *prelude(Session *s) {
  if (s == NULL || s->want[0][0] == '\0') return NULL;
  if (!s->capture && strcmp(s->want[0], s->have[0]) == 0
      && (s->want[1][0] == '\0' || strcmp(s->want[1], s->have[1]) == 0)) return NULL;
  return s->capture
    ? "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
      " set_config('lock_timeout', $1, false),"
      " set_config('statement_timeout', coalesce($2, current_setting('statement_timeout')), false)"
    : "SELECT set_config('lock_timeout', $1, false),"
      " set_config('statement_timeout', coalesce($2, current_setting('statement_timeout')), false)";
}

/* Notes that the prelude of s succeeded (res: its result). */
static void prelude_done(Session *s, const PGresult *res) {
  if (s->capture && PQntuples(res) == 1) {
    snprintf(s->saved[0], sizeof s->saved[0], "%s", PQgetvalue(res, 0, 0));
    snprintf(s->saved[1], sizeof s->saved[1], "%s", PQgetvalue(res, 0, 1));
  }
  if (!s->capture && s->restore && strcmp(s->want[0], s->saved[0]) == 0 && strcmp(s->want[1], s->saved[1]) == 0)
    s->restore = 0;                               /* the caller's values are back */
  snprintf(s->have[0], sizeof s->have[0], "%s", s->want[0]);
  if (s->want[1][0]) snprintf(s->have[1], sizeof s->have[1], "%s", s->want[1]);
  else if (s->capture) snprintf(s->have[1], sizeof s->have[1], "%s", s->saved[1]);
  s->capture = 0;
}

/* Reads the results of one statement of a pipeline up to its end (the
 * NULL after them): the first failure, else the last result. NULL when
 * the connection failed (*broken set). */
static PGresult *pipeline_result(PGconn *conn, int *broken) {
  PGresult *out = NULL, *r;
  for (;;) {
    if (wait_ready(conn) < 0) { pg_clear(out); *broken = 1; return NULL; }
    r = PQgetResult(conn);
    if (r == NULL) return out;
    if (out == NULL || (pg_ok(out) && !pg_ok(r))) { pg_clear(out); out = r; }
    else PQclear(r);
  }
}

/* Reads a sync point's result; 0 when the connection failed. */
static int pipeline_sync(PGconn *conn) {
  if (wait_ready(conn) < 0) return 0;
  PGresult *r = PQgetResult(conn);
  int ok = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
  pg_clear(r);
  return ok;
}

/* Leaves pipeline mode, draining what is left (after a failure). */
static void pipeline_leave(PGconn *conn) {
  PGresult *r;
  if (PQexitPipelineMode(conn)) return;
  while ((r = PQgetResult(conn)) != NULL) PQclear(r);
  PQexitPipelineMode(conn);
}

/* Sends the prelude (pre, with a sync of its own, so that the first step
 * starts its own implicit transaction: VACUUM, DISCARD ALL or REFRESH ...
 * CONCURRENTLY may not share one) and the steps, a sync after each step
 * that asks and after the last. The prelude's set_config takes values
 * matviews formats itself, so it fails only where the steps fail too (a
 * lost connection, an aborted transaction). 0 when libpq refused. */
static int pipeline_send(PGconn *conn, Session *s, const char *pre, const PgStep *steps, int n, const int *prepare,
                         char (*names)[32]) {
  if (pre != NULL) {
    const char *pv[2] = {s->want[0], s->want[1][0] ? s->want[1] : NULL};
    if (!PQsendQueryParams(conn, pre, 2, NULL, pv, NULL, NULL, 0) || !PQpipelineSync(conn)) return 0;
  }
  for (int i = 0; i < n; i++) {
    int sent;
    if (!steps[i].prepared) sent = PQsendQueryParams(conn, steps[i].sql, steps[i].n, NULL, steps[i].vals, NULL, NULL, 0);
    else sent = (!prepare[i] || PQsendPrepare(conn, names[i], steps[i].sql, steps[i].n, NULL))
                && PQsendQueryPrepared(conn, names[i], steps[i].n, steps[i].vals, NULL, NULL, 0);
    if (!sent) return 0;
    if ((steps[i].sync || i == n - 1) && !PQpipelineSync(conn)) return 0;
  }
  return 1;
}


/* 64-bit FNV-1a of s: the name of a prepared statement is that of its
 * text. The long texts hashed last are remembered with their hash: the
 * recorder's begin and finish and a service's lookup come back with every
 * run and are hashed several times each (the begin is 1.5 kB), and
 * comparing a text is much cheaper than hashing it byte by byte. */
#define HASHED_TEXTS 8
#define HASHED_MIN_LEN 256
static unsigned long long text_hash(const char *s) {
  static struct { char *text; size_t len; unsigned long long hash; } known[HASHED_TEXTS];
  static int next_slot;
  size_t len = strlen(s);
  if (len >= HASHED_MIN_LEN)
    for (int i = 0; i < HASHED_TEXTS; i++)
      if (known[i].len == len && memcmp(known[i].text, s, len) == 0) return known[i].hash;
  unsigned long long h = 14695981039346656037ULL;
  for (const char *p = s; *p; p++) { h ^= (unsigned char)*p; h *= 1099511628211ULL; }
  char *copy = len >= HASHED_MIN_LEN ? malloc(len + 1) : NULL;
  if (copy != NULL) {
    memcpy(copy, s, len + 1);
    free(known[next_slot].text);
    known[next_slot].text = copy;
    known[next_slot].len = len;
    known[next_slot].hash = h;
    next_slot = (next_slot + 1) % HASHED_TEXTS;
  }
  return h;
}

/* Whether the statement hashed h is prepared on s's session. */
static int is_prepared(const Session *s, unsigned long long h) {
  for (int i = 0; s && i < s->n_prepared; i++) if (s->prepared[i] == h) return 1;
  return 0;
}

/* Reads the prelude's result into *pre_res and its sync; 0 when the
 * connection failed. */
static int pipeline_prelude(PGconn *conn, PGresult **pre_res) {
  int broken = 0;
  *pre_res = pipeline_result(conn, &broken);
  return !broken && pipeline_sync(conn);
}

/* The name of sql as a prepared statement: "matviews_" and its hash in 16
 * hex digits (written by hand: a run names four or five statements). */
static void prepared_name(char *out, size_t len, const char *sql) {
  static const char hex[] = "0123456789abcdef";
  char name[26] = "matviews_";
  unsigned long long h = text_hash(sql);
  for (int i = 24; i >= 9; i--, h >>= 4) name[i] = hex[h & 15];
  name[25] = '\0';
  if (len == 0) return;
  size_t n = len < sizeof name ? len - 1 : sizeof name - 1;
  memcpy(out, name, n);
  out[n] = '\0';
}

/* Whether res says a prepared statement was deallocated (DISCARD ALL:
 * 26000) or no longer fits the tables (0A000). */
static int stale_result(const PGresult *res) {
  const char *st = res ? pg_sqlstate(res) : NULL;
  return st && (strcmp(st, "26000") == 0 || strcmp(st, "0A000") == 0);
}

/* Whether result i of a pipeline says its prepared statement was stale. */
static int stale_step(const PgStep *steps, PGresult **res, int i) {
  return steps[i].prepared && stale_result(res[i]);
}

/* Whether a pipeline failed because a prepared statement of its first
 * transaction was stale: that transaction committed nothing, and it may
 * be sent again unprepared (the transactions after it, the ANALYZE after
 * a REFRESH, run again with it; when only one of those failed so, the
 * first committed and nothing is sent again). */
static int stale_prepared(PGconn *conn, const PgStep *steps, int n, PGresult **res) {
  int any = 0;
  for (int i = 0; i < n; i++) {
    any |= stale_step(steps, res, i);
    if (steps[i].sync) break;
  }
  return any && PQtransactionStatus(conn) == PQTRANS_IDLE;
}

static PGresult *exec_behind_deferred(PGconn *conn, Session *s, const char *sql, int n, const char *const *vals);

/* A pipeline sent and not read yet (pipeline_start, pipeline_read): the
 * steps as sent (prepared or not), the session's prelude and its result. */
struct PgPipe {
  PGconn *conn;
  Session *s;
  int n, broken, in_block;
  const char *pre;
  PGresult *pre_res;
  int prepare[PG_MAX_STEPS];
  char names[PG_MAX_STEPS][32];
  PgStep use[PG_MAX_STEPS];
  const PgStep *orig;          /* the caller's steps: sent again unprepared when stale */
};

/* The first half of pg_pipeline: sends the steps (after the deferred
 * statements' results and with the session's prelude). */
static void pipeline_start(PgPipe *p, PGconn *conn, const PgStep *steps, int n) {
  int any = 0;
  memset(p, 0, sizeof *p);
  settle_deferred(conn);
  if (n > PG_MAX_STEPS) n = PG_MAX_STEPS;
  for (int i = 0; i < n; i++) any |= steps[i].prepared;
  p->conn = conn;
  p->orig = steps;
  p->n = n;
  p->s = session_of(conn, any);
  p->pre = prelude(p->s);
  /* inside a caller's transaction block the set may yet be rolled back */
  p->in_block = PQtransactionStatus(conn) != PQTRANS_IDLE;
  for (int i = 0, room = p->s ? MAX_PREPARED - p->s->n_prepared : 0; i < n; i++) {
    p->use[i] = steps[i];
    if (p->use[i].prepared && !is_prepared(p->s, text_hash(p->use[i].sql))) {
      /* a session without room for one more runs it unnamed */
      if (room > 0) { p->prepare[i] = 1; room--; } else p->use[i].prepared = 0;
    }
    prepared_name(p->names[i], sizeof p->names[i], p->use[i].sql);
  }
  if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF || !PQenterPipelineMode(conn)) p->broken = 1;
  else if (!pipeline_send(conn, p->s, p->pre, p->use, n, p->prepare, p->names)) { pipeline_leave(conn); p->broken = 1; }
  else mv_query_begin();
}

/* The second half: reads the results into res (as pg_pipeline). */
static int pipeline_read(PgPipe *p, PGresult **res) {
  PGconn *conn = p->conn;
  Session *s = p->s;
  const PgStep *steps = p->use;
  int n = p->n, broken = p->broken;
  for (int i = 0; i < n; i++) res[i] = NULL;
  if (!broken) {
    if (p->pre != NULL && !pipeline_prelude(conn, &p->pre_res)) broken = 1;
    for (int i = 0; i < n && !broken; i++) {
      PGresult *parsed = p->prepare[i] ? pipeline_result(conn, &broken) : NULL;
      if (parsed && pg_ok(parsed) && s && s->n_prepared < MAX_PREPARED) s->prepared[s->n_prepared++] = text_hash(steps[i].sql);
      res[i] = broken ? NULL : pipeline_result(conn, &broken);
      if (steps[i].done_ms) *steps[i].done_ms = monotonic_ms();
      if (parsed && !pg_ok(parsed)) { pg_clear(res[i]); res[i] = parsed; parsed = NULL; } /* its error, not "aborted" */
      pg_clear(parsed);
      if (!broken && (steps[i].sync || i == n - 1) && !pipeline_sync(conn)) broken = 1;
    }
    mv_query_end();
    pipeline_leave(conn);
  }
  PGresult *pre_res = p->pre_res;
  if (pre_res && pg_ok(pre_res)) prelude_done(s, pre_res);
  /* what the session has is unknown: the next statement sets it again */
  if (p->pre != NULL && (p->in_block || broken || !pre_res || !pg_ok(pre_res))) memset(s->have, 0, sizeof s->have);
  if (pre_res && !pg_ok(pre_res)) { pg_clear(res[0]); res[0] = pre_res; pre_res = NULL; }
  pg_clear(pre_res);
  int failed = 0;
  for (int i = 0; i < n; i++) {
    if (res[i] == NULL) res[i] = fatal_result(conn);
    if (!pg_ok(res[i])) failed = 1;
  }
  return failed ? -1 : 0;
}

/* pg_pipeline, once. */
static int pipeline_run(PGconn *conn, const PgStep *steps, int n, PGresult **res) {
  PgPipe p;
  pipeline_start(&p, conn, steps, n);
  return pipeline_read(&p, res);
}

/* After a pipeline was read (rc its result): a prepared statement that was
 * stale is prepared again next time, and when that failed the pipeline's
 * first transaction, the steps are sent again unprepared. */
static int pipeline_stale(PGconn *conn, const PgStep *steps, int n, PGresult **res, int rc) {
  Session *s = session_of(conn, 0);
  if (rc == 0 || s == NULL) return rc;
  for (int i = 0; i < n && i < PG_MAX_STEPS; i++) if (stale_step(steps, res, i)) s->n_prepared = 0; /* prepare again */
  if (!stale_prepared(conn, steps, n, res)) return rc;
  PgStep plain[PG_MAX_STEPS];
  for (int i = 0; i < n && i < PG_MAX_STEPS; i++) { plain[i] = steps[i]; plain[i].prepared = 0; pg_clear(res[i]); }
  s->n_prepared = 0;
  return pipeline_run(conn, plain, n, res);
}

int pg_pipeline(PGconn *conn, const PgStep *steps, int n, PGresult **res) {
  return pipeline_stale(conn, steps, n, res, pipeline_run(conn, steps, n, res));
}

PgPipe *pg_pipeline_send(PGconn *conn, const PgStep *steps, int n) {
  PgPipe *p = malloc(sizeof *p);
  if (p) pipeline_start(p, conn, steps, n);
  if (p && !p->broken) open_pipe = conn;
  return p;
}

void pg_pipeline_drop(PgPipe *p) {
  if (p == NULL) return;
  if (open_pipe == p->conn) open_pipe = NULL;
  if (!p->broken) mv_query_end();
  free(p);
}

int pg_pipeline_collect(PgPipe *p, PGresult **res) {
  if (open_pipe == p->conn) open_pipe = NULL;
  int rc = pipeline_read(p, res);
  rc = pipeline_stale(p->conn, p->orig, p->n, res, rc);
  free(p);
  return rc;
}

/* Runs the prelude of conn's session alone (before a script); 0 on failure
 * with *res the failed result. */
static int run_prelude(PGconn *conn, Session *s, const char *pre, PGresult **res) {
  const char *pv[2] = {s->want[0], s->want[1][0] ? s->want[1] : NULL};
  if (!PQsendQueryParams(conn, pre, 2, NULL, pv, NULL, NULL, 0)) { *res = fatal_result(conn); return 0; }
  PGresult *r = collect(conn);
  if (!pg_ok(r)) { *res = r; return 0; }
  prelude_done(s, r);
  PQclear(r);
  return 1;
}

PGresult *pg_exec(PGconn *conn, const char *sql, int n, const char *const *vals) {
  settle_deferred(conn);
  Session *s = session_of(conn, 0);
  const char *pre = prelude(s);
  if (pre != NULL && PQpipelineStatus(conn) == PQ_PIPELINE_OFF) {
    PgStep step = { sql, n, vals, 1, 0, NULL };
    PGresult *res;
    pg_pipeline(conn, &step, 1, &res);
    return res;
  }
  if (!PQsendQueryParams(conn, sql, n, NULL, vals, NULL, NULL, 0))
    return fatal_result(conn);
  return collect(conn);
}

PGresult *pg_exec_prepared(PGconn *conn, const char *sql, int n, const char *const *vals) {
  Session *s = session_of(conn, 1);
  if (s != NULL && s->deferred && prelude(s) == NULL) {
    PGresult *res = exec_behind_deferred(conn, s, sql, n, vals);
    if (res != NULL && !(stale_result(res) && PQtransactionStatus(conn) == PQTRANS_IDLE)) return res;
    pg_clear(res);                                  /* deallocated meanwhile: as below */
  }
  settle_deferred(conn);
  char name[32];
  if (s == NULL || PQpipelineStatus(conn) != PQ_PIPELINE_OFF) return pg_exec(conn, sql, n, vals);
  PgStep step = { sql, n, vals, 1, 1, NULL };
  PGresult *res = NULL;
  if (!is_prepared(s, text_hash(sql)) || prelude(s) != NULL) {
    pg_pipeline(conn, &step, 1, &res);
    return res;
  }
  prepared_name(name, sizeof name, sql);
  if (!PQsendQueryPrepared(conn, name, n, vals, NULL, NULL, 0)) return fatal_result(conn);
  res = collect(conn);
  if (stale_prepared(conn, &step, 1, &res)) {
    s->n_prepared = 0;
    pg_clear(res);
    res = pg_exec(conn, sql, n, vals);
  }
  return res;
}

PGresult *pg_exec_script(PGconn *conn, const char *sql) {
  settle_deferred(conn);
  Session *s = session_of(conn, 0);
  const char *pre = prelude(s);
  PGresult *failed = NULL;
  if (pre != NULL && !run_prelude(conn, s, pre, &failed)) return failed;
  if (!PQsendQuery(conn, sql))
    return fatal_result(conn);
  return collect(conn);
}

PGresult *pg_describe(PGconn *conn, const char *sql) {
  settle_deferred(conn);
  if (!PQsendPrepare(conn, "", sql, 0, NULL)) return fatal_result(conn);
  PGresult *r = collect(conn);
  if (!pg_ok(r)) return r;
  PQclear(r);
  if (!PQsendDescribePrepared(conn, "")) return fatal_result(conn);
  return collect(conn);
}

/* Whether sql (hash h) must be sent with its Parse: not prepared on the
 * session, nor parsed by a deferred statement sent before it. */
static int needs_parse(const Session *s, unsigned long long h) {
  for (int i = 0; i < s->deferred; i++) if (s->sent[i].hash == h && s->sent[i].prepare) return 0;
  return !is_prepared(s, h);
}

int pg_send_deferred(PGconn *conn, const char *sql, int n, const char *const *vals) {
  Session *s = session_of(conn, 1);
  char name[32];
  if (s == NULL || s->deferred + s->n_res >= MAX_DEFERRED_STMTS || prelude(s) != NULL || !pg_connected(conn)) return 0;
  if (s->deferred == 0 && (PQpipelineStatus(conn) != PQ_PIPELINE_OFF || PQtransactionStatus(conn) != PQTRANS_IDLE)) return 0;
  unsigned long long h = text_hash(sql);
  int prepare = needs_parse(s, h), parses = prepare;
  for (int i = 0; i < s->deferred; i++) parses += s->sent[i].prepare;
  if (s->n_prepared + parses > MAX_PREPARED) return 0;
  prepared_name(name, sizeof name, sql);
  if (s->deferred == 0 && !PQenterPipelineMode(conn)) return 0;
  if ((prepare && !PQsendPrepare(conn, name, sql, n, NULL)) || !PQsendQueryPrepared(conn, name, n, vals, NULL, NULL, 0)
      || !PQpipelineSync(conn)) {
    if (s->deferred == 0) pipeline_leave(conn);     /* else read as broken with the ones before it */
    return 0;
  }
  s->sent[s->deferred].prepare = prepare;
  s->sent[s->deferred].hash = h;
  s->deferred++;
  return 1;
}

/* Reads the results of one prepared statement sent in pipeline mode with
 * its own sync (its Parse first when prepare; hash names it): the
 * statement's result, never NULL. *broken is set when the connection
 * failed. */
static PGresult *read_prepared_step(PGconn *conn, Session *s, int prepare, unsigned long long hash, int *broken) {
  PGresult *res = NULL, *parsed = NULL;
  if (prepare) parsed = pipeline_result(conn, broken);
  if (parsed && pg_ok(parsed) && s->n_prepared < MAX_PREPARED) s->prepared[s->n_prepared++] = hash;
  if (!*broken) res = pipeline_result(conn, broken);
  if (parsed && !pg_ok(parsed)) { pg_clear(res); res = parsed; parsed = NULL; } /* its error, not "aborted" */
  pg_clear(parsed);
  if (!*broken && !pipeline_sync(conn)) *broken = 1;
  if (res == NULL) res = fatal_result(conn);
  if (stale_result(res)) s->n_prepared = 0; /* deallocated meanwhile */
  return res;
}

/* Reads the result of the oldest statement pg_send_deferred sent into
 * the session's stash; after a broken connection, the ones behind it get
 * its error. */
static void read_oldest(PGconn *conn, Session *s, int *broken) {
  PGresult *res = read_prepared_step(conn, s, s->sent[0].prepare, s->sent[0].hash, broken);
  s->deferred--;
  memmove(&s->sent[0], &s->sent[1], sizeof s->sent[0] * (size_t)s->deferred);
  s->deferred_res[s->n_res++] = res;
}

/* read_oldest, leaving pipeline mode after the last. Not a query SIGINT
 * may cancel: what was sent is awaited whole. */
static void deferred_read(PGconn *conn, Session *s) {
  int broken = 0;
  read_oldest(conn, s, &broken);
  if (s->deferred == 0) pipeline_leave(conn);
}

/* pg_exec_prepared while deferred statements' results are unread: sql is
 * sent behind them in the same pipeline, so the server runs them back to
 * back; their results go to the stash, sql's is returned. NULL, having
 * sent nothing, when sql cannot be prepared there (no room). */
static PGresult *exec_behind_deferred(PGconn *conn, Session *s, const char *sql, int n, const char *const *vals) {
  char name[32];
  unsigned long long h = text_hash(sql);
  int prepare = needs_parse(s, h), parses = prepare;
  for (int i = 0; i < s->deferred; i++) parses += s->sent[i].prepare;
  if (prepare && s->n_prepared + parses > MAX_PREPARED) return NULL;
  prepared_name(name, sizeof name, sql);
  int sent = (!prepare || PQsendPrepare(conn, name, sql, n, NULL))
             && PQsendQueryPrepared(conn, name, n, vals, NULL, NULL, 0) && PQpipelineSync(conn);
  int broken = 0;
  while (s->deferred > 0) read_oldest(conn, s, &broken); /* theirs to the stash, oldest first */
  PGresult *res = sent && !broken ? read_prepared_step(conn, s, prepare, h, &broken) : fatal_result(conn);
  pipeline_leave(conn);
  return res;
}

/* Before anything else runs on conn: the results of deferred statements
 * are read (and kept for pg_deferred_take). */
static void settle_deferred(PGconn *conn) {
  Session *s = session_of(conn, 0);
  while (s && s->deferred) deferred_read(conn, s);
}

PGresult *pg_deferred_take(PGconn *conn) {
  Session *s = session_of(conn, 0);
  if (s == NULL) return NULL;
  if (s->n_res == 0 && s->deferred) deferred_read(conn, s);
  if (s->n_res == 0) return NULL;
  PGresult *r = s->deferred_res[0];
  s->n_res--;
  memmove(&s->deferred_res[0], &s->deferred_res[1], sizeof s->deferred_res[0] * (size_t)s->n_res);
  return r;
}

int pg_ok(const PGresult *res) {
  switch (PQresultStatus(res)) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK:
  case PGRES_EMPTY_QUERY:
    return 1;
  case PGRES_BAD_RESPONSE:
  case PGRES_NONFATAL_ERROR:
  case PGRES_FATAL_ERROR:
    return 0;
  case PGRES_COPY_OUT:
  case PGRES_COPY_IN:
  case PGRES_COPY_BOTH:
  case PGRES_SINGLE_TUPLE:
  case PGRES_PIPELINE_SYNC:
  case PGRES_PIPELINE_ABORTED:
  default:
    return 0; /* not something matviews issues: treat as failure */
  }
}

void pg_clear(PGresult *res) { if (res) PQclear(res); }
int pg_nrows(const PGresult *res) { return PQntuples(res); }
int pg_ncols(const PGresult *res) { return PQnfields(res); }
const char *pg_colname(const PGresult *res, int col) { return PQfname(res, col); }
unsigned int pg_coltype(const PGresult *res, int col) { return (unsigned int)PQftype(res, col); }

const char *pg_value(const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) return NULL;
  return PQgetvalue(res, row, col);
}

long long pg_affected(const PGresult *res) {
  const char *t = PQcmdTuples((PGresult *)res);
  return (t && *t) ? strtoll(t, NULL, 10) : 0;
}

const char *pg_sqlstate(const PGresult *res) {
  return res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
}

const char *pg_errfield(const PGresult *res, int code) {
  return res ? PQresultErrorField(res, code) : NULL;
}

/* The primary message of the server's error; a libpq-side one (a lost
 * connection: "FATAL:  terminating connection...\nserver closed the
 * connection unexpectedly\n\tThis probably means...") is cut to its first
 * line, in a static buffer that the next call reuses. */
const char *pg_errmsg(PGconn *conn, const PGresult *res) {
  static char line[512];
  const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (m != NULL) return m;
  if (res) m = PQresultErrorMessage(res);
  if ((m == NULL || *m == '\0') && conn) m = PQerrorMessage(conn);
  if (m == NULL || *m == '\0') return "unknown error";
  one_line(line, sizeof line, m, NULL);
  return line;
}

char *pg_quote_ident(PGconn *conn, const char *name) {
  return PQescapeIdentifier(conn, name, strlen(name));
}

char *pg_quote_literal(PGconn *conn, const char *value) {
  return PQescapeLiteral(conn, value, strlen(value));
}

void pg_free(void *p) { if (p) PQfreemem(p); }
int pg_in_transaction(PGconn *conn) { return PQtransactionStatus(conn) != PQTRANS_IDLE; }
int pg_backend_pid(PGconn *conn) { return PQbackendPID(conn); }
const char *pg_host(PGconn *conn) { return PQhost(conn); }
const char *pg_port(PGconn *conn) { return PQport(conn); }
const char *pg_db(PGconn *conn) { return PQdb(conn); }
const char *pg_user(PGconn *conn) { return PQuser(conn); }

/* Pushes a numeric's text as integer, number or (beyond a double) text. */
static void push_numeric(lua_State *L, const char *s) {
  int sig = 0, seen = 0, dot = 0, zeros = 0;
  const char *p = s;
  if (*p == '-' || *p == '+') p++;
  if (!isdigit((unsigned char)*p) && *p != '.') { lua_pushstring(L, s); return; } /* NaN, Infinity */
  for (; *p; p++) {
    if (*p == '.') { dot = 1; continue; }
    if (!isdigit((unsigned char)*p)) { lua_pushstring(L, s); return; }
    if (*p == '0') { if (seen) zeros++; continue; }
    seen = 1; sig += zeros + 1; zeros = 0;
  }
  if (!dot) {
    /* integral: an integer when it fits in 64 bits, else the exact text */
    size_t ok = lua_stringtonumber(L, s);
    if (ok != 0 && lua_isinteger(L, -1)) return;
    if (ok != 0) lua_pop(L, 1);
    lua_pushstring(L, s);
    return;
  }
  if (sig <= 15) lua_pushnumber(L, strtod(s, NULL));
  else lua_pushstring(L, s);
}

/* Pushes one field converted by its type OID (see the header comment). */
static void push_value(lua_State *L, const PGresult *res, int r, int c) {
  if (PQgetisnull(res, r, c)) { lua_pushlightuserdata(L, NULL); return; }
  const char *v = PQgetvalue(res, r, c);
  switch (PQftype(res, c)) {
  case INT2OID: case INT4OID: case INT8OID: case OIDOID:
    lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
    break;
  case FLOAT4OID: case FLOAT8OID:
    if (lua_stringtonumber(L, v) == 0) lua_pushnumber(L, strtod(v, NULL)); /* inf, nan */
    else if (lua_isinteger(L, -1)) { lua_Integer i = lua_tointeger(L, -1); lua_pop(L, 1); lua_pushnumber(L, (lua_Number)i); }
    break;
  case NUMERICOID:
    push_numeric(L, v);
    break;
  case BOOLOID:
    lua_pushboolean(L, v[0] == 't');
    break;
  default:
    lua_pushlstring(L, v, (size_t)PQgetlength(res, r, c));
  }
}

/* Sets on the rows array at -1 a metatable { __name = "matviews.rows",
 * columns = { names in select order } }, so printers keep the order. */
static void set_rows_meta(lua_State *L, const PGresult *res, int nc) {
  lua_createtable(L, 0, 2);                    /* [rows mt] */
  lua_pushliteral(L, "matviews.rows");
  lua_setfield(L, -2, "__name");
  lua_createtable(L, nc, 0);                   /* [rows mt cols] */
  for (int c = 0; c < nc; c++) {
    lua_pushstring(L, PQfname(res, c));
    lua_rawseti(L, -2, c + 1);
  }
  lua_setfield(L, -2, "columns");              /* [rows mt] */
  lua_setmetatable(L, -2);                     /* [rows] */
}

void pg_push_rows(lua_State *L, const PGresult *res) {
  int nr = PQntuples(res), nc = PQnfields(res);
  lua_createtable(L, nr, 0);
  set_rows_meta(L, res, nc);
  for (int r = 0; r < nr; r++) {
    lua_createtable(L, 0, nc);
    for (int c = 0; c < nc; c++) {
      push_value(L, res, r, c);
      lua_setfield(L, -2, PQfname(res, c));   /* [rows row] */
    }
    lua_rawseti(L, -2, r + 1);                 /* [rows] */
  }
}

/* Sets t[key] = field when the result carries it. */
static void set_field(lua_State *L, const PGresult *res, int code, const char *key) {
  const char *v = res ? PQresultErrorField(res, code) : NULL;
  if (v) { lua_pushstring(L, v); lua_setfield(L, -2, key); }
}

void pg_push_error(lua_State *L, PGconn *conn, const PGresult *res) {
  char msg[1024];
  const char *m = pg_errmsg(conn, res);
  size_t len = strlen(m);
  if (len >= sizeof msg) len = sizeof msg - 1;
  memcpy(msg, m, len);
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
  msg[len] = '\0';
  lua_createtable(L, 0, 5);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  set_field(L, res, PG_DIAG_SQLSTATE, "sqlstate");
  set_field(L, res, PG_DIAG_MESSAGE_DETAIL, "detail");
  set_field(L, res, PG_DIAG_MESSAGE_HINT, "hint");
  const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
  if (pos) { lua_pushinteger(L, strtol(pos, NULL, 10)); lua_setfield(L, -2, "position"); }
  mv_error_setmt(L);
}

/* __gc of a guard: clears the result it still holds. */
static int guard_gc(lua_State *L) {
  pg_guard_clear((PGresult **)lua_touserdata(L, 1));
  return 0;
}

PGresult **pg_guard(lua_State *L) {
  PGresult **slot = (PGresult **)lua_newuserdatauv(L, sizeof(PGresult *), 0);
  *slot = NULL; /* before the metatable, so __gc never sees garbage */
  if (luaL_newmetatable(L, "matviews.pgresult")) {
    lua_pushcfunction(L, guard_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return slot;
}

void pg_guard_clear(PGresult **slot) {
  if (slot && *slot) { PQclear(*slot); *slot = NULL; }
}

int pg_ping(const char *conninfo) {
  return PQping(conninfo) == PQPING_OK;
}
