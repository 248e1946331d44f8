/*
 * swap.h: the plan of a swap refresh, captured from the catalog before
 * anything is built (swap_plan.c) and carried out by swap.c.
 *
 * Naming (what `reconcile` looks for): the build relation is
 *   mv_swap_<name>_<backend pid>
 * and its indexes mv_swap_<name>_<backend pid>_i<n>, <name> truncated so
 * each fits in 63 bytes, in the view's schema. A swap drops them itself on
 * any failure; one left behind belongs to a session that died mid-swap:
 * its pid is no longer in pg_stat_activity.
 * Memory: every string of a SwapPlan is malloc'd; swap_plan_free frees them.
 */
#ifndef MV_SWAP_H
#define MV_SWAP_H
#include "svc.h"

typedef struct {
  char tmp[64];          /* build relation name (unquoted) */
  char *qtmp;            /* "schema"."tmp" */
  char *create;          /* CREATE MATERIALIZED VIEW qtmp ... WITH DATA */
  MvStrList build_idx;   /* CREATE INDEX on qtmp, one per index of the old view */
  MvStrList renames;     /* ALTER INDEX tmp_i RENAME TO old name */
  MvStrList drops;       /* DROP of the dependents, dependents first */
  MvStrList attrs;       /* owner, grants, comments of the swapped-in view */
  MvStrList rebuild;     /* CREATE, indexes, owner, grants, comments of each dependent */
  MvStrList rebuilt;     /* dependents' names, "schema.rel" */
  MvStrList upstream_keys; /* advisory keys shared-locked while building (swap_guard.c) */
} SwapPlan;

/* The temp name for the view (suffix "" for the relation, "_i<n>" for an index). */
void swap_temp_name(char *out, size_t outlen, const char *name, int pid, const char *suffix);
void swap_plan_free(SwapPlan *p);
/* The two halves of a swap refresh, so that a strategy can audit the new
 * contents in between (write-audit-publish). Build: preflight, plan, the
 * build relation with the old view's indexes (committed); 0, or -1 with
 * the response's error set. Publish: owner, grants, comments, dependents
 * and the short swap transaction, then the count; 0, or -1 with the error
 * set and the build dropped. swap_refresh is build then publish. */
int swap_build_phase(MvSvc *s, MvRel *rel, SwapPlan *p);
int swap_publish_phase(MvSvc *s, MvRel *rel, SwapPlan *p);
/* Drops the build relation (and its indexes), if it exists. */
void swap_drop_build(MvSvc *s, const SwapPlan *p);
/* Refuses (error set, -1) when something depends on the view (or on a view
 * reading it) that a swap cannot rebuild, naming it. */
int swap_plan_refuse(MvSvc *s, const MvRel *rel);
/* Captures the build statement, the old view's indexes and the dependents. */
int swap_plan_build(MvSvc *s, const MvRel *rel, SwapPlan *p);
/* After the build: owner, grants and comments to restore (column comments
 * only for columns the new relation has). */
int swap_plan_attrs(MvSvc *s, const MvRel *rel, SwapPlan *p);
/* Appends the attribute statements of relation oid (columns checked against
 * cols_oid) to out. */
int swap_attr_sql(MvSvc *s, unsigned oid, const char *cols_oid, MvStrList *out);

/* swap_guard.c: shared locks on the upstreams from build to swap, the
 * exclusive lock on the view in its swap transaction, dead builds dropped. */
int swap_guard_upstreams(MvSvc *s, const MvRel *rel, SwapPlan *p);
void swap_guard_release(MvSvc *s, const SwapPlan *p);
int swap_guard_exclusive(MvSvc *s, const MvRel *rel);
void swap_guard_drop_dead(MvSvc *s, const MvRel *rel);

#endif
