/*
 * svc_basic.c: the create_view, regular_refresh and delete_view services
 * (see svc.h). Each statement that changes something is logged in
 * response.sql; database errors end up in the response, never raised.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "svc.h"
#include "pg.h"
#include "validate.h"
#include "vocab.h"

/* CREATE [UNIQUE] INDEX for the definition's i-th declared index (columns
 * quoted), under its declared name (as `apply` names them) or <view>_idx<n>. */
static char *plain_index_sql(MvSvc *s, int i) {
  char idx[128], num[16];
  snprintf(num, sizeof num, "_idx%d", i + 1);
  snprintf(idx, sizeof idx, "%.*s%s", MV_MAX_IDENT - (int)strlen(num), s->d->name, num);
  const char *name = s->d->index_names[i] ? s->d->index_names[i] : idx;
  char *cols = svc_column_list(s, s->d->indexes[i], -1);
  char *qidx = pg_quote_ident(s->conn, name);
  const char *tail = s->d->index_tails ? s->d->index_tails[i] : NULL;
  char *sql = NULL;
  if (qidx && tail) /* method, expressions, INCLUDE, WHERE: composed by matviews.indexes */
    sql = mv_fmt("CREATE %sINDEX %s ON %s %s", s->d->index_unique[i] ? "UNIQUE " : "", qidx, s->qview, tail);
  else if (qidx && cols)
    sql = mv_fmt("CREATE %sINDEX %s ON %s (%s)", s->d->index_unique[i] ? "UNIQUE " : "", qidx, s->qview, cols);
  pg_free(qidx);
  free(cols);
  return sql;
}

/* Runs a malloc'd statement (NULL = out of memory), logging it; frees it. */
static int run_owned(MvSvc *s, char *sql) {
  if (sql == NULL) { svc_fail(s, "out of memory", NULL, NULL, NULL); return -1; }
  int rc = svc_run(s, sql, 1);
  free(sql);
  return rc;
}

const char *const mv_privilege_names[] = {
  "SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", NULL
};

/* GRANT for the definition's i-th grant: privilege words from the constant
 * list, the role quoted (PUBLIC is the keyword). */
static char *grant_sql(MvSvc *s, int i) {
  char privs[128] = "";
  for (int b = 0; mv_privilege_names[b]; b++)
    if (s->d->grant_privs[i] & (1u << b)) {
      if (privs[0]) strcat(privs, ", ");
      strcat(privs, mv_privilege_names[b]);
    }
  const char *role = s->d->grant_roles[i];
  if (strcasecmp(role, "PUBLIC") == 0) return mv_fmt("GRANT %s ON %s TO PUBLIC", privs, s->qview);
  char *qrole = pg_quote_ident(s->conn, role);
  char *sql = qrole ? mv_fmt("GRANT %s ON %s TO %s", privs, s->qview, qrole) : NULL;
  pg_free(qrole);
  return sql;
}

/* The statements of create_view, inside the caller's transaction bracket. */
static int create_steps(MvSvc *s, int replace) {
  size_t len = 0;
  char err[256];
  const MvDefn *d = s->d;
  mv_valid_query_sql(d->sql, d->sql_len, &len, err, sizeof err);
  if (replace && run_owned(s, mv_fmt("DROP MATERIALIZED VIEW %s", s->qview)) < 0) return -1;
  if (run_owned(s, mv_fmt("CREATE MATERIALIZED VIEW %s AS\n%.*s\nWITH %sDATA", s->qview,
                          (int)len, d->sql, s->o->no_data ? "NO " : "")) < 0)
    return -1;
  if (d->n_unique > 0 && run_owned(s, svc_unique_index_sql(s)) < 0) return -1;
  for (int i = 0; i < d->n_indexes; i++)
    if (run_owned(s, plain_index_sql(s, i)) < 0) return -1;
  for (int i = 0; i < d->n_grants; i++)
    if (run_owned(s, grant_sql(s, i)) < 0) return -1;
  if (d->comment) {
    char *lit = pg_quote_literal(s->conn, d->comment);
    char *sql = lit ? mv_fmt("COMMENT ON MATERIALIZED VIEW %s IS %s", s->qview, lit) : NULL;
    pg_free(lit);
    if (run_owned(s, sql) < 0) return -1;
  }
  return 0;
}

/* After a refused DROP (of delete, or of create --force: verb "delete" or
 * "recreate"): names what depends on the view and the command that drops
 * them too. */
static void explain_dependents(MvSvc *s, const MvRel *rel, const char *verb) {
  char oid[16], msg[2048];
  const char *vals[1] = { oid };
  snprintf(oid, sizeof oid, "%u", rel->oid);
  PGresult *res = pg_exec(s->conn,
    "SELECT string_agg(DISTINCT what, ', ') FROM ("
    " SELECT CASE WHEN r.oid IS NOT NULL THEN"
    "   CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view ' ELSE 'relation ' END"
    "   || n.nspname || '.' || c.relname"
    "  ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END AS what"
    " FROM pg_depend d LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid"
    " LEFT JOIN pg_class c ON c.oid = r.ev_class LEFT JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::oid AND d.deptype = 'n'"
    "   AND r.ev_class IS DISTINCT FROM $1::oid) x", 1, vals);
  const char *list = pg_ok(res) && pg_nrows(res) == 1 ? pg_value(res, 0, 0) : NULL;
  snprintf(msg, sizeof msg, "cannot %s materialized view %s: other objects depend on it (%s); "
           "`matviews delete --cascade %s` (cascade = true from Lua) drops them too%s", verb, s->r->view,
           list ? list : "see detail", s->r->view,
           strcmp(verb, "recreate") == 0 ? ", then `matviews create --all` creates them again" : "");
  svc_fail(s, msg, SQLSTATE_DEPENDENT_OBJECTS, s->r->err_detail, NULL);
  pg_clear(res);
}

/* create_view once the definition is valid and the schema known. */
static void create_in(MvSvc *s) {
  char msg[512];
  MvRel rel;
  int found = svc_lookup(s, &rel);
  if (found < 0) return;
  if (found && rel.relkind != 'm') { svc_require_matview(s, found, &rel); return; }
  if (found && !s->o->force) {
    snprintf(msg, sizeof msg, "materialized view %s already exists: `matviews create --force %s` "
             "(force = true from Lua) drops and recreates it", s->r->view, s->r->view);
    svc_fail(s, msg, SQLSTATE_DUPLICATE_TABLE, NULL, NULL);
    return;
  }
  if (found) s->r->before = svc_count(s, &rel);
  if (svc_tx_begin(s, 1) < 0) return;
  int ok = create_steps(s, found) == 0;
  if (svc_tx_end(s, 1, ok) < 0) return;
  if (!ok) {
    if (found && s->r->err_sqlstate && strcmp(s->r->err_sqlstate, SQLSTATE_DEPENDENT_OBJECTS) == 0)
      explain_dependents(s, &rel, "recreate");
    return;
  }
  if (svc_lookup(s, &rel) == 1) s->r->after = svc_count_after(s, &rel);
  s->r->status = MV_ST_CREATED;
}

void svc_create_view(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvSvc s;
  if (svc_open(&s, c, d, o, r, 1) == 0) create_in(&s);
  svc_close(&s);
}

/* Runs one logged statement in a savepoint when the caller is in a
 * transaction, so a failure leaves the caller's transaction usable. */
static int run_bracketed(MvSvc *s, char *sql) {
  if (svc_tx_begin(s, 0) < 0) { free(sql); return -1; }
  int ok = run_owned(s, sql) == 0;
  svc_tx_end(s, 0, ok);
  return ok ? 0 : -1;
}

/* The REFRESH of a regular refresh, once the view is known to be a
 * materialized view (before counted); fills the rest of the response. */
static void refreshed(MvSvc *s, MvRel *rel, int ok) {
  if (!ok) return;
  rel->populated = 1;
  s->r->after = svc_count_after(s, rel);
  s->r->status = MV_ST_UPDATED;
}

/* Outside a transaction, with no exact count before: the lookup and the
 * REFRESH in one round trip (one transaction: the lookup only reads the
 * catalog, so the view's lock is taken by the REFRESH as it would be
 * alone). A relation that is missing or no materialized view fails the
 * REFRESH, and the lookup's answer gives the error its usual text. (Its
 * commit waits for the WAL flush whatever synchronous_commit says: it
 * drops the view's old files.) The ANALYZE and the count after it
 * (svc_count_after) follow in the same round trip, in a transaction of
 * their own after the REFRESH's commit; when the REFRESH failed, their
 * results are dropped (the ANALYZE then read the view as it was, or
 * failed with it). Sent here, read by refresh_read. */
static int refresh_send(SvcRefresh *f) {
  MvSvc *s = &f->s;
  f->vals[0] = s->schema;
  f->vals[1] = s->d->name;
  f->sql = mv_fmt("REFRESH MATERIALIZED VIEW %s", s->qview);
  if (f->sql == NULL) { svc_fail(s, "out of memory", NULL, NULL, NULL); return 0; }
  f->refreshed_ms = f->counted_ms = -1;
  PgStep lookup = { SVC_LOOKUP_SQL, 2, f->vals, 0, 1, NULL }, refresh = { f->sql, 0, NULL, 1, 0, &f->refreshed_ms };
  f->steps[0] = lookup;
  f->steps[1] = refresh;
  f->n = 2;
  if (s->o->analyze && svc_analyze_steps(s, f->steps + 2, f->avals, &f->asql) == 0) {
    f->steps[3].done_ms = &f->counted_ms;
    f->n = 4;
  }
  f->pipe = pg_pipeline_send(s->conn, f->steps, f->n);
  if (f->pipe == NULL) { svc_fail(s, "out of memory", NULL, NULL, NULL); return 0; }
  return 1;
}

static void refresh_read(SvcRefresh *f) {
  MvSvc *s = &f->s;
  MvRel rel;
  PGresult *res[4] = { NULL, NULL, NULL, NULL };
  pg_pipeline_collect(f->pipe, res);
  f->pipe = NULL;
  int found = svc_read_lookup(s, res[0], &rel);
  if (svc_require_matview(s, found, &rel) == 0) {
    mv_strlist_add(&s->r->sql, f->sql);
    s->r->before = svc_count(s, &rel);
    s->r->refresh = mv_strdup(mv_strategy_names[MV_STRATEGY_REGULAR]);
    if (!pg_ok(res[1])) svc_fail_res(s, res[1]);
    else if (f->n == 4) {
      rel.populated = 1;
      s->r->after = svc_analyze_taken(s, &rel, f->asql, res[2], res[3], f->counted_ms - f->refreshed_ms);
      s->r->status = MV_ST_UPDATED;
    } else refreshed(s, &rel, 1);
  }
  for (int i = 0; i < f->n; i++) pg_clear(res[i]);
}

int svc_regular_refresh_send(SvcRefresh *f, PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvRel rel;
  memset(f, 0, sizeof *f);
  if (svc_open(&f->s, c, d, o, r, 0) < 0) return 0;
  if (!pg_in_transaction(c) && o->row_count != MV_RC_EXACT) return refresh_send(f);
  if (svc_require_matview(&f->s, svc_lookup(&f->s, &rel), &rel) == 0) {
    r->before = svc_count(&f->s, &rel);
    r->refresh = mv_strdup(mv_strategy_names[MV_STRATEGY_REGULAR]);
    refreshed(&f->s, &rel, run_bracketed(&f->s, mv_fmt("REFRESH MATERIALIZED VIEW %s", f->s.qview)) == 0);
  }
  return 0;
}

void svc_regular_refresh_collect(SvcRefresh *f, int connected) {
  if (f->pipe && connected) refresh_read(f);
  pg_pipeline_drop(f->pipe);
  f->pipe = NULL;
  free(f->asql);
  free(f->sql);
  f->asql = f->sql = NULL;
  svc_close(&f->s);
}

void svc_regular_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  SvcRefresh f;
  svc_regular_refresh_send(&f, c, d, o, r);
  svc_regular_refresh_collect(&f, 1);
}

/* delete_view once the definition is valid and the schema known. */
static void delete_in(MvSvc *s) {
  char msg[512];
  MvRel rel;
  int found = svc_lookup(s, &rel);
  if (found == 0 && s->o->if_exists) {
    snprintf(msg, sizeof msg, "materialized view %s does not exist; skipped", s->r->view);
    s->r->note = mv_strdup(msg);
    s->r->status = MV_ST_SKIPPED;
    return;
  }
  if (found == 0) {
    snprintf(msg, sizeof msg, "materialized view %s does not exist (`matviews delete --if-exists` skips "
             "a view that is missing)", s->r->view);
    svc_fail(s, msg, SQLSTATE_UNDEFINED_TABLE, NULL, NULL);
    return;
  }
  if (svc_require_matview(s, found, &rel) < 0) return;
  s->r->before = svc_count(s, &rel);
  if (run_bracketed(s, mv_fmt("DROP MATERIALIZED VIEW %s %s", s->qview,
                              s->o->cascade ? "CASCADE" : "RESTRICT")) == 0) {
    s->r->status = MV_ST_DELETED;
    return;
  }
  if (s->r->err_sqlstate && strcmp(s->r->err_sqlstate, SQLSTATE_DEPENDENT_OBJECTS) == 0)
    explain_dependents(s, &rel, "delete");
}

void svc_delete_view(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvSvc s;
  if (svc_open(&s, c, d, o, r, 0) == 0) delete_in(&s);
  svc_close(&s);
}
