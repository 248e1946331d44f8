/*
 * svc_concurrent.c: the concurrent_refresh service. Preflight before
 * REFRESH ... CONCURRENTLY: not inside the caller's transaction block, the
 * view exists, it was populated once (else a regular refresh, said in the
 * response), it has a valid unique index on plain columns without WHERE
 * (else an error carrying the CREATE UNIQUE INDEX to run). Afterwards a
 * warning when a key column holds NULLs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "svc.h"
#include "pg.h"
#include "vocab.h"

/* The key columns of the first usable unique index: names for the user,
 * "a IS NULL OR ..." for the NULL check (quoted by the server's quote_ident).
 * 1 found, 0 none, -1 database error. */
static int usable_index(MvSvc *s, const MvRel *rel, char *names, size_t nlen, char **nullcond) {
  char oid[16];
  const char *vals[1] = { oid };
  snprintf(oid, sizeof oid, "%u", rel->oid);
  PGresult *res = svc_exec(s,
    "SELECT string_agg(a.attname, ', ' ORDER BY k.ord),"
    "       string_agg(quote_ident(a.attname) || ' IS NULL', ' OR ' ORDER BY k.ord)"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
    " CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)"
    " JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum"
    " WHERE x.indrelid = $1::oid AND x.indisunique AND x.indisvalid AND x.indpred IS NULL"
    "   AND x.indexprs IS NULL AND k.ord <= x.indnkeyatts"
    " GROUP BY i.relname ORDER BY i.relname LIMIT 1", 1, vals, 0);
  if (res == NULL) return -1;
  int found = pg_nrows(res) == 1;
  if (found) {
    snprintf(names, nlen, "%s", pg_value(res, 0, 0));
    *nullcond = mv_strdup(pg_value(res, 0, 1));
  }
  pg_clear(res);
  return found;
}

/* The error for a view without a usable unique index, naming the fix. */
static void fail_no_index(MvSvc *s) {
  char *create = svc_unique_index_sql(s);
  char *msg = mv_fmt("materialized view %s has no usable unique index for a concurrent refresh "
                     "(a valid unique index on plain columns, without WHERE); create one: %s",
                     s->r->view, create ? create : "CREATE UNIQUE INDEX ...");
  svc_fail(s, msg ? msg : "no usable unique index", SQLSTATE_OBJECT_STATE, NULL,
           s->d->n_unique ? NULL : "name the key columns in the definition's unique_index_columns");
  free(msg);
  free(create);
}

/* Adds the warning when a key column holds NULLs in the refreshed view;
 * reads the view's reltuples in the same statement (for svc_count). */
static void warn_null_keys(MvSvc *s, MvRel *rel, const char *names, const char *nullcond) {
  char oid[16];
  const char *vals[1] = { oid };
  snprintf(oid, sizeof oid, "%u", rel->oid);
  char *sql = mv_fmt("SELECT EXISTS (SELECT 1 FROM %s WHERE %s), (SELECT reltuples::bigint FROM pg_class WHERE oid = $1::oid)",
                     s->qview, nullcond);
  PGresult *res = sql ? pg_exec(s->conn, sql, 1, vals) : NULL;
  if (res && pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 0)[0] == 't') {
    char *w = mv_fmt("key column(s) %s of %s hold NULLs: rows with a NULL key never match, "
                     "so every concurrent refresh deletes and reinserts them", names, s->r->view);
    if (w) mv_strlist_add(&s->r->warnings, w);
    free(w);
  }
  if (res && pg_ok(res) && pg_nrows(res) == 1 && pg_value(res, 0, 1)) {
    rel->reltuples = strtoll(pg_value(res, 0, 1), NULL, 10);
    rel->count_fresh = 1;
  }
  pg_clear(res);
  free(sql);
}

/* A never-populated view: CONCURRENTLY is impossible, a regular refresh is not. */
static int refresh_first_time(MvSvc *s) {
  char *sql = mv_fmt("REFRESH MATERIALIZED VIEW %s", s->qview);
  char *note = mv_fmt("%s was never populated: ran a regular refresh (CONCURRENTLY needs a populated view)", s->r->view);
  int rc = sql ? svc_run(s, sql, 1) : -1;
  s->r->refresh = mv_strdup(mv_strategy_names[MV_STRATEGY_REGULAR]);
  s->r->note = note;
  free(sql);
  return rc;
}

/* The REFRESH ... CONCURRENTLY itself, after the unique-index preflight. */
static int refresh_concurrently(MvSvc *s, MvRel *rel) {
  char names[1024];
  char *nullcond = NULL;
  int found = usable_index(s, rel, names, sizeof names, &nullcond);
  if (found <= 0) {
    if (found == 0) fail_no_index(s);
    return -1;
  }
  char *sql = mv_fmt("REFRESH MATERIALIZED VIEW CONCURRENTLY %s", s->qview);
  int rc = sql ? svc_run(s, sql, 1) : -1;
  s->r->refresh = mv_strdup(mv_strategy_names[MV_STRATEGY_CONCURRENT]);
  if (rc == 0 && nullcond) warn_null_keys(s, rel, names, nullcond);
  free(sql);
  free(nullcond);
  return rc;
}

/* concurrent_refresh once the definition is valid and the schema known. */
static void concurrent_in(MvSvc *s) {
  char msg[512];
  MvRel rel;
  if (pg_in_transaction(s->conn)) {
    snprintf(msg, sizeof msg, "concurrent refresh of %s must run outside a transaction block, "
             "and the connection is in one", s->r->view);
    svc_fail(s, msg, SQLSTATE_ACTIVE_TRANSACTION, NULL, "commit or roll back first, or use a regular refresh");
    return;
  }
  if (svc_require_matview(s, svc_lookup(s, &rel), &rel) < 0) return;
  s->r->before = svc_count(s, &rel);
  int rc = rel.populated ? refresh_concurrently(s, &rel) : refresh_first_time(s);
  if (rc < 0) return;
  rel.populated = 1;
  s->r->after = svc_count_after(s, &rel);
  s->r->status = MV_ST_UPDATED;
}

void svc_concurrent_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvSvc s;
  if (svc_open(&s, c, d, o, r, 0) == 0) concurrent_in(&s);
  svc_close(&s);
}
