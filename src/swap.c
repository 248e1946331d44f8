/*
 * swap.c: the swap_refresh service. Preflight (no caller transaction, the
 * view exists, nothing depends on it that cannot be rebuilt), then the plan
 * (swap_plan.c), then:
 *   1. build: one transaction creates the temp relation from the
 *      definition's SQL and every index of the old view on it (slow part,
 *      no lock on the old view);
 *   2. swap: one short transaction bounded by SET LOCAL lock_timeout drops
 *      the dependents and the old view, renames the temp relation and its
 *      indexes into place, restores owner, grants and comments, and
 *      rebuilds the dependents with theirs. response.lock_ms is its length.
 * On any failure the swap transaction rolls back (old view untouched) and
 * the temp relation is dropped. Temp naming: see swap.h. Swaps of views
 * that read one another are ordered by advisory locks (swap_guard.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "swap.h"
#include "pg.h"
#include "vocab.h"

/* Runs each statement of l, logged; -1 at the first failure. */
static int run_list(MvSvc *s, const MvStrList *l) {
  for (int i = 0; i < l->n; i++)
    if (svc_run(s, l->v[i], 1) < 0) return -1;
  return 0;
}

/* Rolls back, keeping the error already recorded. */
static void rollback(MvSvc *s) {
  pg_clear(pg_exec(s->conn, "ROLLBACK", 0, NULL));
}

/* Drops the temp relation (and its indexes with it), if it exists. */
void swap_drop_build(MvSvc *s, const SwapPlan *p) {
  char *sql = mv_fmt("DROP MATERIALIZED VIEW IF EXISTS %s", p->qtmp);
  if (sql) pg_clear(pg_exec(s->conn, sql, 0, NULL));
  free(sql);
}

#define SQLSTATE_UNDEFINED_COLUMN "42703"

/* The old indexes on the build relation when replacing the view's SQL
 * (opts.replace, from `apply`): an index on a column the new SQL no longer
 * has is left out (with a warning) instead of failing the replace; its
 * rename is dropped from the plan. */
static int build_indexes_replacing(MvSvc *s, SwapPlan *p) {
  for (int i = 0; i < p->build_idx.n; i++) {
    if (svc_run(s, "SAVEPOINT matviews_index", 0) < 0) return -1;
    if (svc_run(s, p->build_idx.v[i], 1) == 0) { if (svc_run(s, "RELEASE SAVEPOINT matviews_index", 0) < 0) return -1; continue; }
    if (s->r->err_sqlstate == NULL || strcmp(s->r->err_sqlstate, SQLSTATE_UNDEFINED_COLUMN) != 0) return -1;
    char *warn = mv_fmt("an index of the old view is not kept: %s", s->r->err_message);
    if (warn) mv_strlist_add(&s->r->warnings, warn);
    free(warn);
    if (svc_run(s, "ROLLBACK TO SAVEPOINT matviews_index", 0) < 0) return -1;
    free(p->renames.v[i]); /* the rename of index i goes with it: shift the rest down */
    memmove(&p->renames.v[i], &p->renames.v[i + 1], sizeof(char *) * (size_t)(p->renames.n - i - 1));
    p->renames.n--;
    free(p->build_idx.v[i]);
    memmove(&p->build_idx.v[i], &p->build_idx.v[i + 1], sizeof(char *) * (size_t)(p->build_idx.n - i - 1));
    p->build_idx.n--;
    i--;
    free(s->r->err_message); free(s->r->err_sqlstate); free(s->r->err_detail); free(s->r->err_hint);
    s->r->err_message = s->r->err_sqlstate = s->r->err_detail = s->r->err_hint = NULL;
    s->r->status = MV_ST_ERROR;
  }
  return 0;
}

/* Step 1: the temp relation with the new contents and the old indexes.
 * A relation of that name can only be a leftover of a dead session that
 * had our backend pid: it is dropped first. */
static int build(MvSvc *s, SwapPlan *p) {
  char *drop = mv_fmt("DROP MATERIALIZED VIEW IF EXISTS %s", p->qtmp);
  int ok = drop && svc_run(s, "BEGIN", 0) == 0;
  ok = ok && svc_run(s, drop, 0) == 0 && svc_run(s, p->create, 1) == 0;
  ok = ok && (s->o->replace ? build_indexes_replacing(s, p) : run_list(s, &p->build_idx)) == 0;
  free(drop);
  if (ok) return svc_run(s, "COMMIT", 0);
  rollback(s);
  return -1;
}

/* The error for a swap that gave up waiting for its locks. */
static void fail_lock_timeout(MvSvc *s) {
  char *msg = mv_fmt("swap of %s gave up waiting for a lock after %d ms (lock_timeout_ms); the old view is untouched",
                     s->r->view, s->o->lock_timeout_ms);
  char *detail = mv_strdup(s->r->err_message);
  svc_fail(s, msg, SQLSTATE_LOCK_NOT_AVAILABLE, detail,
           "another session is using the view or a view reading it; retry later or raise lock_timeout_ms");
  free(msg);
  free(detail);
}

/* Step 2: the short transaction that puts the new relation in place. */
static int swap_tx(MvSvc *s, const MvRel *rel, const SwapPlan *p) {
  char set[64];
  snprintf(set, sizeof set, "SET LOCAL lock_timeout = %d", s->o->lock_timeout_ms);
  char *qname = pg_quote_ident(s->conn, s->d->name);
  char *drop_old = mv_fmt("DROP MATERIALIZED VIEW %s", s->qview);
  char *rename = qname ? mv_fmt("ALTER MATERIALIZED VIEW %s RENAME TO %s", p->qtmp, qname) : NULL;
  long long t0 = mv_now_ms();
  int ok = drop_old && rename && svc_run(s, "BEGIN", 0) == 0;
  ok = ok && svc_run(s, set, 1) == 0 && swap_guard_exclusive(s, rel) == 0;
  ok = ok && run_list(s, &p->drops) == 0 && svc_run(s, drop_old, 1) == 0;
  ok = ok && svc_run(s, rename, 1) == 0 && run_list(s, &p->renames) == 0;
  ok = ok && run_list(s, &p->attrs) == 0 && run_list(s, &p->rebuild) == 0;
  ok = ok && svc_run(s, "COMMIT", 0) == 0;
  s->r->lock_ms = mv_now_ms() - t0;
  if (!ok) {
    rollback(s);
    if (s->r->err_sqlstate && strcmp(s->r->err_sqlstate, SQLSTATE_LOCK_NOT_AVAILABLE) == 0) fail_lock_timeout(s);
  }
  pg_free(qname);
  free(drop_old);
  free(rename);
  return ok ? 0 : -1;
}

/* Preflight checks that answer before anything is built. */
static int preflight(MvSvc *s, MvRel *rel) {
  char msg[512];
  if (pg_in_transaction(s->conn)) {
    snprintf(msg, sizeof msg, "swap refresh of %s must run outside a transaction block, "
             "and the connection is in one", s->r->view);
    svc_fail(s, msg, SQLSTATE_ACTIVE_TRANSACTION, NULL, "commit or roll back first, or use a regular refresh");
    return -1;
  }
  if (svc_require_matview(s, svc_lookup(s, rel), rel) < 0) return -1;
  return swap_plan_refuse(s, rel);
}

int swap_build_phase(MvSvc *s, MvRel *rel, SwapPlan *p) {
  memset(p, 0, sizeof *p);
  if (preflight(s, rel) < 0) return -1;
  s->r->before = svc_count(s, rel);
  s->r->refresh = mv_strdup(mv_strategy_names[MV_STRATEGY_SWAP]);
  swap_guard_drop_dead(s, rel);
  if (swap_plan_build(s, rel, p) < 0 || swap_guard_upstreams(s, rel, p) < 0 || build(s, p) < 0) {
    swap_guard_release(s, p);
    return -1;
  }
  s->r->temp_relation = mv_strdup(p->tmp);
  return 0;
}

int swap_publish_phase(MvSvc *s, MvRel *rel, SwapPlan *p) {
  int rc = -1;
  if (swap_plan_attrs(s, rel, p) == 0 && swap_tx(s, rel, p) == 0) {
    for (int i = 0; i < p->rebuilt.n; i++) mv_strlist_add(&s->r->rebuilt, p->rebuilt.v[i]);
    if (svc_lookup(s, rel) == 1) s->r->after = svc_count_after(s, rel);
    s->r->status = MV_ST_UPDATED;
    rc = 0;
  } else {
    swap_drop_build(s, p);
  }
  swap_guard_release(s, p); /* after the swap: the build relation is gone */
  return rc;
}

/* swap_refresh once the definition is valid and the schema known. */
static void swap_in(MvSvc *s) {
  MvRel rel;
  SwapPlan p;
  if (swap_build_phase(s, &rel, &p) == 0) swap_publish_phase(s, &rel, &p);
  swap_plan_free(&p);
}

void svc_swap_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r) {
  MvSvc s;
  if (svc_open(&s, c, d, o, r, 1) == 0) swap_in(&s);
  svc_close(&s);
}
