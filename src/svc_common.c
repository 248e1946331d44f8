/*
 * svc_common.c: what every view service does (see svc.h): validate the
 * definition, resolve the schema, run and log statements, record errors in
 * the response, look the view up and count its rows. Response strings are
 * malloc'd here and freed by mv_resp_free.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "svc.h"
#include "pg.h"
#include "validate.h"
#include "vocab.h"

const char *const mv_strategy_names[] = MV_STRATEGY_NAMES;

char *mv_strdup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

char *mv_fmt(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

long long mv_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mv_strlist_add(MvStrList *l, const char *s) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 8;
    char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
    if (v == NULL) return -1;
    l->v = v;
    l->cap = cap;
  }
  if ((l->v[l->n] = mv_strdup(s)) == NULL) return -1;
  l->n++;
  return 0;
}

void mv_strlist_free(MvStrList *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

void mv_resp_init(MvResp *r) {
  memset(r, 0, sizeof *r);
  r->status = MV_ST_ERROR;
  r->before = r->after = r->lock_ms = r->analyze_ms = -1;
}

void mv_resp_free(MvResp *r) {
  mv_strlist_free(&r->sql);
  mv_strlist_free(&r->warnings);
  mv_strlist_free(&r->rebuilt);
  free(r->refresh); free(r->note); free(r->temp_relation);
  free(r->err_message); free(r->err_sqlstate); free(r->err_detail); free(r->err_hint);
  r->refresh = r->note = r->temp_relation = NULL;
  r->err_message = r->err_sqlstate = r->err_detail = r->err_hint = NULL;
}

void svc_fail(MvSvc *s, const char *msg, const char *sqlstate, const char *detail, const char *hint) {
  MvResp *r = s->r;
  /* copy first: the arguments may be the response's current strings */
  char *m = mv_strdup(msg ? msg : "unknown error"), *st = mv_strdup(sqlstate);
  char *de = mv_strdup(detail), *hi = mv_strdup(hint);
  free(r->err_message); free(r->err_sqlstate); free(r->err_detail); free(r->err_hint);
  r->err_message = m;
  r->err_sqlstate = st;
  r->err_detail = de;
  r->err_hint = hi;
  r->status = MV_ST_ERROR;
}

void svc_fail_res(MvSvc *s, const PGresult *res) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", pg_errmsg(s->conn, res));
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
  svc_fail(s, msg, pg_sqlstate(res), pg_errfield(res, PG_DIAG_MESSAGE_DETAIL),
           pg_errfield(res, PG_DIAG_MESSAGE_HINT));
}

PGresult *svc_exec(MvSvc *s, const char *sql, int n, const char *const *vals, int log) {
  if (log) mv_strlist_add(&s->r->sql, sql);
  PGresult *res = pg_exec(s->conn, sql, n, vals);
  if (pg_ok(res)) return res;
  svc_fail_res(s, res);
  pg_clear(res);
  return NULL;
}

int svc_run(MvSvc *s, const char *sql, int log) {
  PGresult *res = svc_exec(s, sql, 0, NULL, log);
  if (res == NULL) return -1;
  pg_clear(res);
  return 0;
}

/* Checks the definition's name (and query) before any SQL runs. */
static int check_defn(MvSvc *s, int need_sql) {
  char err[256], msg[512];
  const MvDefn *d = s->d;
  if (d->schema && !mv_valid_identifier(d->schema, d->schema_len, err, sizeof err)) {
    if (strlen(d->schema) != d->schema_len) snprintf(msg, sizeof msg, "invalid schema_name: %s", err);
    else snprintf(msg, sizeof msg, "invalid schema_name \"%s\": %s", d->schema, err);
    svc_fail(s, msg, SQLSTATE_INVALID_NAME, NULL, NULL);
    return -1;
  }
  if (!mv_valid_identifier(d->name, d->name ? d->name_len : 0, err, sizeof err)) {
    if (d->name && strlen(d->name) != d->name_len) snprintf(msg, sizeof msg, "invalid name: %s", err);
    else snprintf(msg, sizeof msg, "invalid name \"%s\": %s", d->name ? d->name : "", err);
    svc_fail(s, msg, SQLSTATE_INVALID_NAME, NULL, NULL);
    return -1;
  }
  if (d->nul_field) {
    snprintf(msg, sizeof msg, "invalid %s: contains a NUL byte", d->nul_field);
    svc_fail(s, msg, SQLSTATE_INVALID_PARAM, NULL, NULL);
    return -1;
  }
  for (int i = 0; i < d->n_unique; i++)
    if (!mv_valid_identifier(d->unique_cols[i], strlen(d->unique_cols[i]), err, sizeof err)) {
      snprintf(msg, sizeof msg, "invalid unique_index_columns entry \"%s\": %s", d->unique_cols[i], err);
      svc_fail(s, msg, SQLSTATE_INVALID_NAME, NULL, NULL);
      return -1;
    }
  if (!need_sql) return 0;
  if (d->sql == NULL || !mv_valid_query_sql(d->sql, d->sql_len, NULL, err, sizeof err)) {
    snprintf(msg, sizeof msg, "invalid sql: %s", d->sql ? err : "is missing");
    svc_fail(s, msg, SQLSTATE_SYNTAX_ERROR, NULL, NULL);
    return -1;
  }
  return 0;
}

/* The schema the view lives in: the definition's stored schema_name, so
 * that one definition means one view whatever the session's search_path;
 * a table without one (an ad-hoc definition) gets the first existing
 * schema of search_path, else public. */
static int resolve_schema(MvSvc *s) {
  if (s->d->schema) {
    snprintf(s->schema, sizeof s->schema, "%s", s->d->schema);
    return 0;
  }
  PGresult *res = svc_exec(s, "SELECT coalesce((current_schemas(false))[1], 'public') AS s", 0, NULL, 0);
  if (res == NULL) return -1;
  snprintf(s->schema, sizeof s->schema, "%s", pg_value(res, 0, 0));
  pg_clear(res);
  return 0;
}

int svc_open(MvSvc *s, PGconn *conn, const MvDefn *d, const MvOpts *o, MvResp *r, int need_sql) {
  memset(s, 0, sizeof *s);
  s->conn = conn; s->d = d; s->o = o; s->r = r;
  if (check_defn(s, need_sql) < 0 || resolve_schema(s) < 0) return -1;
  snprintf(r->view, sizeof r->view, "%s.%s", s->schema, d->name);
  char *qs = pg_quote_ident(conn, s->schema), *qn = pg_quote_ident(conn, d->name);
  if (qs && qn) s->qview = mv_fmt("%s.%s", qs, qn);
  pg_free(qs); pg_free(qn);
  if (s->qview == NULL) { svc_fail(s, "out of memory quoting the view name", NULL, NULL, NULL); return -1; }
  return 0;
}

void svc_close(MvSvc *s) {
  free(s->qview);
  s->qview = NULL;
}

/* The view's relation in the resolved schema ($1 schema, $2 name). */
const char *const SVC_LOOKUP_SQL = "SELECT c.oid, c.relkind, c.relispopulated, c.reltuples::bigint FROM pg_class c "
                                   "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2";

int svc_read_lookup(MvSvc *s, PGresult *res, MvRel *rel) {
  if (!pg_ok(res)) { svc_fail_res(s, res); return -1; }
  int found = pg_nrows(res) > 0;
  if (found) {
    rel->oid = (unsigned)strtoul(pg_value(res, 0, 0), NULL, 10);
    rel->relkind = pg_value(res, 0, 1)[0];
    rel->populated = pg_value(res, 0, 2)[0] == 't';
    rel->reltuples = strtoll(pg_value(res, 0, 3), NULL, 10);
    rel->count_fresh = 1;
  }
  return found;
}

int svc_lookup(MvSvc *s, MvRel *rel) {
  const char *vals[2] = { s->schema, s->d->name };
  PGresult *res = pg_exec(s->conn, SVC_LOOKUP_SQL, 2, vals);
  int found = svc_read_lookup(s, res, rel);
  pg_clear(res);
  return found;
}

int svc_require_matview(MvSvc *s, int found, const MvRel *rel) {
  char msg[512];
  if (found < 0) return -1;
  if (found == 0) {
    snprintf(msg, sizeof msg, "materialized view %s does not exist: `matviews create %s` creates it",
             s->r->view, s->r->view);
    svc_fail(s, msg, SQLSTATE_UNDEFINED_TABLE, NULL, NULL);
    return -1;
  }
  if (rel->relkind != 'm') {
    snprintf(msg, sizeof msg, "%s exists and is not a materialized view", s->r->view);
    svc_fail(s, msg, SQLSTATE_WRONG_OBJECT_TYPE, NULL, NULL);
    return -1;
  }
  return 0;
}

long long svc_count(MvSvc *s, MvRel *rel) {
  char oid[16];
  const char *vals[1] = { oid };
  PGresult *res = NULL;
  long long n = -1;
  int fresh = rel->count_fresh;
  rel->count_fresh = 0;
  if (s->o->row_count == MV_RC_NONE || !rel->populated) return -1;
  if (s->o->row_count == MV_RC_ESTIMATED && fresh) return rel->reltuples < 0 ? -1 : rel->reltuples;
  snprintf(oid, sizeof oid, "%u", rel->oid);
  if (s->o->row_count == MV_RC_ESTIMATED) {
    res = pg_exec(s->conn, "SELECT reltuples::bigint FROM pg_class WHERE oid = $1::oid", 1, vals);
  } else {
    char *sql = mv_fmt("SELECT count(*) FROM %s", s->qview);
    if (sql) res = pg_exec(s->conn, sql, 0, NULL);
    free(sql);
  }
  if (res && pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0))
    n = strtoll(pg_value(res, 0, 0), NULL, 10);
  pg_clear(res);
  return n < 0 ? -1 : n;
}

/* Runs ANALYZE on the view; a failure becomes a warning (inside a caller's
 * transaction it is rolled back to a savepoint, so the transaction goes on).
 * Sets analyze_ms and logs the statement when it succeeded. */
static void analyze_view(MvSvc *s) {
  int in_tx = pg_in_transaction(s->conn);
  char *sql = mv_fmt("ANALYZE %s", s->qview);
  if (sql == NULL) return;
  if (in_tx) pg_clear(pg_exec(s->conn, "SAVEPOINT matviews_analyze", 0, NULL));
  long long t0 = mv_now_ms();
  PGresult *res = pg_exec(s->conn, sql, 0, NULL);
  if (res && pg_ok(res)) {
    s->r->analyze_ms = mv_now_ms() - t0;
    mv_strlist_add(&s->r->sql, sql);
    if (in_tx) pg_clear(pg_exec(s->conn, "RELEASE SAVEPOINT matviews_analyze", 0, NULL));
  } else {
    const char *why = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char *w = mv_fmt("ANALYZE %s failed: %s", s->qview, why ? why : "no result");
    if (w) mv_strlist_add(&s->r->warnings, w);
    free(w);
    if (in_tx) pg_clear(pg_exec_script(s->conn, "ROLLBACK TO SAVEPOINT matviews_analyze; RELEASE SAVEPOINT matviews_analyze"));
  }
  pg_clear(res);
  free(sql);
}

/* The count after ANALYZE: the view's fresh reltuples, found by its quoted
 * name (so that it may be sent before the lookup's answer), in the
 * ANALYZE's transaction, which it makes commit without waiting for the
 * WAL flush; or, for row_count none, only that. */
static const char *const COUNT_AFTER_ANALYZE_SQL =
  "SELECT reltuples::bigint, set_config('synchronous_commit', 'off', true) FROM pg_class WHERE oid = to_regclass($1)";
static const char *const NO_COUNT_AFTER_ANALYZE_SQL =
  "SELECT NULL::bigint, set_config('synchronous_commit', 'off', true) WHERE $1::text IS NOT NULL";

int svc_analyze_steps(MvSvc *s, PgStep *steps, const char **vals, char **sql) {
  *sql = mv_fmt("ANALYZE %s", s->qview);
  if (*sql == NULL) return -1;
  vals[0] = s->qview;
  PgStep analyze = { *sql, 0, NULL, 0, 0, NULL };
  PgStep count = { s->o->row_count == MV_RC_ESTIMATED ? COUNT_AFTER_ANALYZE_SQL : NO_COUNT_AFTER_ANALYZE_SQL,
                   1, vals, 1, 1, NULL };
  steps[0] = analyze;
  steps[1] = count;
  return 0;
}

long long svc_analyze_taken(MvSvc *s, MvRel *rel, const char *sql, PGresult *analyzed, PGresult *counted, long long ms) {
  long long n = -1;
  int ok = pg_ok(analyzed) && pg_ok(counted);
  rel->count_fresh = 0; /* reltuples read before ANALYZE are stale */
  if (ok) {
    s->r->analyze_ms = ms < 0 ? 0 : ms;
    mv_strlist_add(&s->r->sql, sql);
    if (pg_nrows(counted) == 1 && pg_value(counted, 0, 0)) n = strtoll(pg_value(counted, 0, 0), NULL, 10);
  } else {
    const char *why = PQresultErrorField(pg_ok(analyzed) ? counted : analyzed, PG_DIAG_MESSAGE_PRIMARY);
    char *w = mv_fmt("ANALYZE %s failed: %s", s->qview, why ? why : "no result");
    if (w) mv_strlist_add(&s->r->warnings, w);
    free(w);
  }
  if (!ok) return svc_count(s, rel);
  return s->o->row_count == MV_RC_NONE || n < 0 ? -1 : n;
}

/* ANALYZE and the estimated count after it in one round trip, outside any
 * transaction: one transaction that commits without waiting for its WAL to
 * be flushed (synchronous_commit off for it alone, set by the count). The
 * statistics are the only thing it writes; a recorded run's finish, a
 * synchronous commit later in the same WAL, makes them durable with it,
 * and should the server crash before, autovacuum analyzes again. A failed
 * ANALYZE (the count is then skipped) falls back to the count alone, with
 * the warning. Returns the count. */
static long long analyze_count_pipelined(MvSvc *s, MvRel *rel) {
  PgStep steps[2];
  const char *vals[1];
  char *sql;
  PGresult *res[2];
  rel->count_fresh = 0;
  if (svc_analyze_steps(s, steps, vals, &sql) < 0) return svc_count(s, rel);
  long long t0 = mv_now_ms();
  pg_pipeline(s->conn, steps, 2, res);
  long long n = svc_analyze_taken(s, rel, sql, res[0], res[1], mv_now_ms() - t0);
  pg_clear(res[0]);
  pg_clear(res[1]);
  free(sql);
  return n;
}

long long svc_count_after(MvSvc *s, MvRel *rel) {
  if (s->o->analyze && rel->populated && s->o->row_count != MV_RC_EXACT && !pg_in_transaction(s->conn))
    return analyze_count_pipelined(s, rel);
  if (s->o->analyze && rel->populated) {
    analyze_view(s);
    rel->count_fresh = 0; /* reltuples read before ANALYZE are stale */
  }
  return svc_count(s, rel);
}

int svc_tx_begin(MvSvc *s, int outer) {
  s->savepoint = pg_in_transaction(s->conn);
  if (s->savepoint) return svc_run(s, "SAVEPOINT matviews_service", 0);
  return outer ? svc_run(s, "BEGIN", 0) : 0;
}

int svc_tx_end(MvSvc *s, int outer, int ok) {
  const char *sql;
  if (s->savepoint)
    sql = ok ? "RELEASE SAVEPOINT matviews_service"
             : "ROLLBACK TO SAVEPOINT matviews_service; RELEASE SAVEPOINT matviews_service";
  else if (outer)
    sql = ok ? "COMMIT" : "ROLLBACK";
  else
    return 0;
  if (ok) return svc_run(s, sql, 0);
  pg_clear(pg_exec_script(s->conn, sql)); /* keeps the error already recorded */
  return 0;
}

char *svc_column_list(MvSvc *s, const char *const *cols, int n) {
  size_t cap = 1, used = 0;
  for (int i = 0; n < 0 ? cols[i] != NULL : i < n; i++) cap += strlen(cols[i]) * 2 + 4;
  char *out = malloc(cap);
  if (out == NULL) return NULL;
  out[0] = '\0';
  for (int i = 0; n < 0 ? cols[i] != NULL : i < n; i++) {
    char *q = pg_quote_ident(s->conn, cols[i]);
    if (q == NULL) { free(out); return NULL; }
    used += (size_t)snprintf(out + used, cap - used, "%s%s", i ? ", " : "", q);
    pg_free(q);
  }
  return out;
}

char *svc_unique_index_sql(MvSvc *s) {
  const MvDefn *d = s->d;
  char idx[64];
  snprintf(idx, sizeof idx, "%.*s_unique", MV_MAX_IDENT - 7, d->name);
  char *qidx = pg_quote_ident(s->conn, idx);
  char *cols = svc_column_list(s, d->unique_cols, d->n_unique);
  if (cols == NULL || qidx == NULL) { free(cols); pg_free(qidx); return NULL; }
  char *sql = mv_fmt("CREATE UNIQUE INDEX %s ON %s (%s)", qidx, s->qview,
                     d->n_unique ? cols : "<key columns>");
  free(cols);
  pg_free(qidx);
  return sql;
}
