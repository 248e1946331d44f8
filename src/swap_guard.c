/*
 * swap_guard.c: what keeps a swap from colliding with the swaps around it.
 *
 * A swap builds mv_swap_<name>_<pid> from the definition's SQL, which reads
 * the view's upstream materialized views. If an upstream is swapped while
 * that build relation exists, the upstream's DROP fails ("other objects
 * depend on it"). So, on advisory keys 'matviews-swap:<schema>.<view>':
 *   - from before its build until after its swap, a swap holds a shared
 *     session lock on each upstream materialized view (found through the
 *     old view's rewrite rule, through plain views too);
 *   - its swap transaction takes the exclusive transaction lock on its own
 *     view first, so it waits until no build reading the view is under way.
 * The order follows the dependency graph, so the locks cannot deadlock;
 * waits are bounded by the job's lock_timeout (55P03, retried).
 * Also: build relations of this view left by sessions that are gone (an
 * earlier attempt whose connection was lost) are dropped before building.
 * Memory: the keys are strings in the plan (freed with it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "swap.h"
#include "pg.h"
#include "vocab.h"

#define KEY "hashtextextended('matviews-swap:' || n.nspname || '.' || c.relname, 0)"

/* Upstream materialized views of the view $1 (oid), through plain views. */
#define UPSTREAMS \
  "WITH RECURSIVE up(oid) AS (" \
  " SELECT d.refobjid FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass" \
  "  AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class" \
  " WHERE r.ev_class = $1::oid" \
  " UNION" \
  " SELECT d.refobjid FROM up JOIN pg_class v ON v.oid = up.oid AND v.relkind = 'v'" \
  " JOIN pg_rewrite r ON r.ev_class = v.oid JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass" \
  "  AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid)"

/* Takes the shared locks on the upstreams of rel; keys kept in p. */
int swap_guard_upstreams(MvSvc *s, const MvRel *rel, SwapPlan *p) {
  char oid[16];
  snprintf(oid, sizeof oid, "%u", rel->oid);
  const char *vals[1] = { oid };
  PGresult *res = svc_exec(s, UPSTREAMS " SELECT DISTINCT " KEY "::text FROM up JOIN pg_class c ON c.oid = up.oid"
                           " AND c.relkind = 'm' JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1", 1, vals, 0);
  if (res == NULL) return -1;
  int rc = 0;
  for (int i = 0; i < pg_nrows(res) && rc == 0; i++)
    if (mv_strlist_add(&p->upstream_keys, pg_value(res, i, 0)) < 0) rc = -1;
  pg_clear(res);
  if (rc < 0) { svc_fail(s, "out of memory", NULL, NULL, NULL); return -1; }
  for (int i = 0; i < p->upstream_keys.n; i++) {
    const char *k[1] = { p->upstream_keys.v[i] };
    res = svc_exec(s, "SELECT pg_advisory_lock_shared($1::bigint)", 1, k, 0);
    if (res == NULL) return -1; /* the caller releases what was taken */
    pg_clear(res);
  }
  return 0;
}

/* Releases the shared locks (those not taken only draw a warning, which
 * matviews does not show). */
void swap_guard_release(MvSvc *s, const SwapPlan *p) {
  for (int i = 0; i < p->upstream_keys.n; i++) {
    const char *k[1] = { p->upstream_keys.v[i] };
    pg_clear(pg_exec(s->conn, "SELECT pg_advisory_unlock_shared($1::bigint)", 1, k));
  }
}

/* In the swap transaction, first: the exclusive lock on the view itself. */
int swap_guard_exclusive(MvSvc *s, const MvRel *rel) {
  char oid[16];
  snprintf(oid, sizeof oid, "%u", rel->oid);
  const char *vals[1] = { oid };
  PGresult *res = svc_exec(s, "SELECT pg_advisory_xact_lock(" KEY ") FROM pg_class c"
                           " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid", 1, vals, 0);
  if (res == NULL) return -1;
  pg_clear(res);
  return 0;
}

/* Drops this view's build relations whose session is gone. One that will
 * not go (something reads it) stays for reconcile to report. */
void swap_guard_drop_dead(MvSvc *s, const MvRel *rel) {
  char oid[16];
  snprintf(oid, sizeof oid, "%u", rel->oid);
  const char *vals[1] = { oid };
  PGresult *res = svc_exec(s, "SELECT format('DROP MATERIALIZED VIEW IF EXISTS %I.%I', n.nspname, t.relname)"
    " FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace"
    " JOIN pg_class t ON t.relnamespace = v.relnamespace AND t.relkind = 'm' AND starts_with(t.relname, '" MV_BUILD_PREFIX "')"
    " CROSS JOIN LATERAL (SELECT (regexp_match(t.relname, '_([0-9]+)$'))[1] AS pid) p"
    " WHERE v.oid = $1::oid AND t.relname = " MV_BUILD_RELATION_SQL("v.relname", "p.pid")
    " AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = p.pid::int)", 1, vals, 0);
  if (res == NULL) return;
  for (int i = 0; i < pg_nrows(res); i++) pg_clear(pg_exec(s->conn, pg_value(res, i, 0), 0, NULL));
  pg_clear(res);
}
