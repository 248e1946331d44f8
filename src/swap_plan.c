/*
 * swap_plan.c: reads from the catalog everything a swap must rebuild (see
 * swap.h): the old view's indexes (pg_get_indexdef, retargeted at the build
 * relation), its owner, grants and comments, and the plain and materialized
 * views bound to it (recursively) with theirs. Catalog-derived identifiers
 * are quoted by the server's quote_ident/format(%I); values never reach SQL
 * text unquoted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "swap.h"
#include "pg.h"
#include "validate.h"
#include "vocab.h"

/* The views (v/m) bound to the old one through _RETURN rules, recursively. */
#define BOUND_VIEWS \
  "WITH RECURSIVE deps(oid, depth) AS (" \
  " SELECT $1::oid, 0" \
  " UNION" \
  " SELECT r.ev_class, deps.depth + 1 FROM deps" \
  " JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.oid" \
  "  AND d.classid = 'pg_rewrite'::regclass" \
  " JOIN pg_rewrite r ON r.oid = d.objid AND r.rulename = '_RETURN' AND r.ev_class <> deps.oid" \
  " JOIN pg_class c ON c.oid = r.ev_class AND c.relkind IN ('v', 'm'))"

void swap_temp_name(char *out, size_t outlen, const char *name, int pid, const char *suffix) {
  char tail[48];
  snprintf(tail, sizeof tail, "_%d%s", pid, suffix);
  int room = MV_MAX_IDENT - (int)(sizeof MV_BUILD_PREFIX - 1) - (int)strlen(tail);
  snprintf(out, outlen, MV_BUILD_PREFIX "%.*s%s", room < 0 ? 0 : room, name, tail);
}

void swap_plan_free(SwapPlan *p) {
  mv_strlist_free(&p->upstream_keys);
  free(p->qtmp); free(p->create);
  p->qtmp = p->create = NULL;
  mv_strlist_free(&p->build_idx); mv_strlist_free(&p->renames); mv_strlist_free(&p->drops);
  mv_strlist_free(&p->attrs); mv_strlist_free(&p->rebuild); mv_strlist_free(&p->rebuilt);
}

/* Runs a catalog query with the oid as $1 (and $2 when given). */
static PGresult *oid_query(MvSvc *s, const char *sql, unsigned oid, const char *second) {
  char o[16];
  snprintf(o, sizeof o, "%u", oid);
  const char *vals[2] = { o, second };
  return svc_exec(s, sql, second ? 2 : 1, vals, 0);
}

/* Appends column 0 of every row to out. */
static int rows_into(PGresult *res, MvStrList *out) {
  if (res == NULL) return -1;
  int rc = 0;
  for (int i = 0; i < pg_nrows(res) && rc == 0; i++) rc = mv_strlist_add(out, pg_value(res, i, 0)) < 0 ? -1 : 0;
  pg_clear(res);
  return rc;
}

int swap_plan_refuse(MvSvc *s, const MvRel *rel) {
  PGresult *res = oid_query(s, BOUND_VIEWS
    " SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), ', ')"
    " FROM (SELECT DISTINCT oid FROM deps) v JOIN pg_class c ON c.oid = v.oid"
    " JOIN pg_depend d ON (d.refclassid = 'pg_class'::regclass AND d.refobjid = v.oid)"
    "   OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = c.reltype)"
    " LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid"
    " LEFT JOIN pg_class i ON d.classid = 'pg_class'::regclass AND i.oid = d.objid"
    " WHERE d.deptype <> 'i' AND i.relkind IS DISTINCT FROM 'i'"
    "   AND NOT coalesce(r.rulename = '_RETURN' AND r.ev_class IN (SELECT oid FROM deps), false)", rel->oid, NULL);
  if (res == NULL) return -1;
  const char *list = pg_value(res, 0, 0);
  if (list != NULL) {
    char *msg = mv_fmt("swap of %s refused before building: a swap cannot rebuild what depends on the view "
                       "(or on a view reading it): %s", s->r->view, list);
    svc_fail(s, msg, SQLSTATE_DEPENDENT_OBJECTS, NULL, "use a regular or concurrent refresh for this view");
    free(msg);
  }
  pg_clear(res);
  return list != NULL ? -1 : 0;
}

/* The part of an index definition from " USING " on, after checking that
 * what precedes it is exactly CREATE [UNIQUE] INDEX name ON [ONLY] table. */
static const char *index_tail(const PGresult *res, int row) {
  const char *def = pg_value(res, row, 1), *qidx = pg_value(res, row, 2);
  const char *lead = pg_value(res, row, 0)[0] == 't' ? "CREATE UNIQUE INDEX " : "CREATE INDEX ";
  const char *p = def;
  if (strncmp(p, lead, strlen(lead)) != 0) return NULL;
  p += strlen(lead);
  if (strncmp(p, qidx, strlen(qidx)) != 0 || strncmp(p + strlen(qidx), " ON ", 4) != 0) return NULL;
  p += strlen(qidx) + 4;
  if (strncmp(p, "ONLY ", 5) == 0) p += 5;
  for (int col = 3; col <= 4; col++) {
    size_t n = strlen(pg_value(res, row, col));
    if (strncmp(p, pg_value(res, row, col), n) == 0 && strncmp(p + n, " USING ", 7) == 0) return p + n;
  }
  return NULL;
}

/* One index of the old view: built on the temp relation, renamed in the swap. */
static int plan_index(MvSvc *s, SwapPlan *p, const PGresult *res, int row, int pid, char *qschema) {
  char tmpidx[64], suffix[16];
  const char *tail = index_tail(res, row);
  if (tail == NULL) {
    char *msg = mv_fmt("swap of %s refused before building: cannot reproduce index %s (%s)",
                       s->r->view, pg_value(res, row, 2), pg_value(res, row, 1));
    svc_fail(s, msg, SQLSTATE_OBJECT_STATE, NULL, NULL);
    free(msg);
    return -1;
  }
  snprintf(suffix, sizeof suffix, "_i%d", row + 1);
  swap_temp_name(tmpidx, sizeof tmpidx, s->d->name, pid, suffix);
  char *q = pg_quote_ident(s->conn, tmpidx);
  char *create = q ? mv_fmt("CREATE %sINDEX %s ON %s%s", pg_value(res, row, 0)[0] == 't' ? "UNIQUE " : "",
                            q, p->qtmp, tail) : NULL;
  char *rename = q ? mv_fmt("ALTER INDEX %s.%s RENAME TO %s", qschema, q, pg_value(res, row, 2)) : NULL;
  /* an index built but never renamed (or the reverse) would be lost */
  int rc = create && rename && mv_strlist_add(&p->build_idx, create) == 0
           && mv_strlist_add(&p->renames, rename) == 0 ? 0 : -1;
  if (rc < 0) svc_fail(s, "out of memory", NULL, NULL, NULL);
  free(create); free(rename); pg_free(q);
  return rc;
}

/* Every index of the old view. */
static int plan_indexes(MvSvc *s, const MvRel *rel, SwapPlan *p, int pid, char *qschema) {
  PGresult *res = oid_query(s,
    "SELECT x.indisunique, pg_get_indexdef(i.oid), quote_ident(i.relname),"
    "       quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(c.relname)"
    " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE x.indrelid = $1::oid ORDER BY i.relname",
    rel->oid, NULL);
  if (res == NULL) return -1;
  int rc = 0;
  for (int i = 0; i < pg_nrows(res) && rc == 0; i++) rc = plan_index(s, p, res, i, pid, qschema);
  pg_clear(res);
  return rc;
}

int swap_attr_sql(MvSvc *s, unsigned oid, const char *cols_oid, MvStrList *out) {
  return rows_into(oid_query(s,
    "WITH c AS (SELECT c.oid, c.relacl, pg_get_userbyid(c.relowner) AS owner,"
    "   format('%I.%I', n.nspname, c.relname) AS q,"
    "   CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END AS kind"
    "   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::oid)"
    " SELECT stmt FROM ("
    " SELECT 1 AS o, 0 AS k, format('ALTER %s %s OWNER TO %I', kind, q, owner) AS stmt FROM c"
    " UNION ALL SELECT 2, 0, format('REVOKE ALL ON %s FROM PUBLIC, %I', q, owner) FROM c WHERE relacl IS NOT NULL"
    " UNION ALL SELECT 3, row_number() OVER (), format('GRANT %s ON %s TO %s%s',"
    "   string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), q,"
    "   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,"
    "   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) FROM c CROSS JOIN LATERAL aclexplode(c.relacl) a"
    "   GROUP BY q, a.grantee, a.is_grantable"
    " UNION ALL SELECT 4, 0, format('COMMENT ON %s %s IS %L', kind, q, d.description) FROM c"
    "   JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid = 0"
    " UNION ALL SELECT 5, d.objsubid, format('COMMENT ON COLUMN %s.%I IS %L', q, a.attname, d.description) FROM c"
    "   JOIN pg_description d ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid AND d.objsubid > 0"
    "   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid"
    "   WHERE EXISTS (SELECT 1 FROM pg_attribute t WHERE t.attrelid = $2::oid AND t.attname = a.attname"
    "     AND t.attnum > 0 AND NOT t.attisdropped)"
    " ) x ORDER BY o, k", oid, cols_oid), out);
}

/* One dependent (in creation order): its DROP goes first in the swap (so
 * prepended), its CREATE, indexes and attributes after the rename. */
static int plan_dependent(MvSvc *s, SwapPlan *p, const PGresult *res, int row) {
  unsigned oid = (unsigned)strtoul(pg_value(res, row, 0), NULL, 10);
  int matview = pg_value(res, row, 1)[0] == 'm';
  char *drop = mv_fmt("DROP %s %s", matview ? "MATERIALIZED VIEW" : "VIEW", pg_value(res, row, 2));
  if (drop == NULL || mv_strlist_add(&p->drops, drop) < 0) { free(drop); return -1; }
  free(drop);
  /* a dependent dropped in the swap must be rebuilt: refuse the plan if
   * its CREATE cannot be kept */
  if (mv_strlist_add(&p->rebuild, pg_value(res, row, 4)) < 0 || mv_strlist_add(&p->rebuilt, pg_value(res, row, 3)) < 0)
    return -1;
  if (matview && rows_into(oid_query(s, "SELECT pg_get_indexdef(indexrelid) FROM pg_index"
                                        " WHERE indrelid = $1::oid ORDER BY indexrelid", oid, NULL), &p->rebuild) < 0)
    return -1;
  return swap_attr_sql(s, oid, pg_value(res, row, 0), &p->rebuild);
}

/* The views bound to the old one, in an order where each comes after what it reads. */
static int plan_dependents(MvSvc *s, const MvRel *rel, SwapPlan *p) {
  PGresult *res = oid_query(s, BOUND_VIEWS
    " SELECT c.oid, c.relkind, format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname,"
    "  format('CREATE %s %I.%I%s AS %s%s', CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,"
    "   n.nspname, c.relname,"
    "   CASE WHEN c.reloptions IS NULL THEN '' ELSE ' WITH (' || array_to_string(c.reloptions, ', ') || ')' END,"
    "   regexp_replace(pg_get_viewdef(c.oid), ';\\s*$', ''),"
    "   CASE WHEN c.relkind <> 'm' THEN '' WHEN c.relispopulated THEN ' WITH DATA' ELSE ' WITH NO DATA' END)"
    " FROM (SELECT oid, max(depth) AS depth FROM deps WHERE depth > 0 GROUP BY oid) v"
    " JOIN pg_class c ON c.oid = v.oid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " ORDER BY v.depth, c.oid", rel->oid, NULL);
  if (res == NULL) return -1;
  int rc = 0;
  for (int i = 0; i < pg_nrows(res) && rc == 0; i++) rc = plan_dependent(s, p, res, i);
  pg_clear(res);
  if (rc == 0) /* drop in reverse creation order: readers before what they read */
    for (int i = 0, j = p->drops.n - 1; i < j; i++, j--) {
      char *t = p->drops.v[i]; p->drops.v[i] = p->drops.v[j]; p->drops.v[j] = t;
    }
  return rc;
}

/* CREATE of the build relation, with the old view's storage options. */
static int plan_create(MvSvc *s, const MvRel *rel, SwapPlan *p) {
  size_t len = 0;
  char err[256];
  PGresult *res = oid_query(s,
    "SELECT CASE WHEN c.reloptions IS NULL THEN '' ELSE ' WITH (' || array_to_string(c.reloptions, ', ') || ')' END"
    " || CASE WHEN c.reltablespace = 0 THEN '' ELSE ' TABLESPACE ' || quote_ident(t.spcname) END"
    " FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace WHERE c.oid = $1::oid", rel->oid, NULL);
  if (res == NULL) return -1;
  mv_valid_query_sql(s->d->sql, s->d->sql_len, &len, err, sizeof err);
  p->create = mv_fmt("CREATE MATERIALIZED VIEW %s%s AS\n%.*s\nWITH DATA", p->qtmp, pg_value(res, 0, 0),
                     (int)len, s->d->sql);
  pg_clear(res);
  return p->create ? 0 : -1;
}

int swap_plan_build(MvSvc *s, const MvRel *rel, SwapPlan *p) {
  int pid = pg_backend_pid(s->conn);
  swap_temp_name(p->tmp, sizeof p->tmp, s->d->name, pid, "");
  char *qschema = pg_quote_ident(s->conn, s->schema), *qt = pg_quote_ident(s->conn, p->tmp);
  if (qschema && qt) p->qtmp = mv_fmt("%s.%s", qschema, qt);
  pg_free(qt);
  int rc = p->qtmp ? 0 : -1;
  if (rc < 0) svc_fail(s, "out of memory", NULL, NULL, NULL);
  if (rc == 0) rc = plan_create(s, rel, p);
  if (rc == 0) rc = plan_indexes(s, rel, p, pid, qschema);
  if (rc == 0) rc = plan_dependents(s, rel, p);
  /* a failed allocation leaves no message of its own: never swap on a
   * partial plan, and say why */
  if (rc < 0 && s->r->err_message == NULL) svc_fail(s, "out of memory", NULL, NULL, NULL);
  pg_free(qschema);
  return rc;
}

int swap_plan_attrs(MvSvc *s, const MvRel *rel, SwapPlan *p) {
  const char *vals[1] = { p->qtmp };
  PGresult *res = svc_exec(s, "SELECT $1::regclass::oid::text", 1, vals, 0);
  if (res == NULL) return -1;
  char tmpoid[16];
  snprintf(tmpoid, sizeof tmpoid, "%s", pg_value(res, 0, 0));
  pg_clear(res);
  return swap_attr_sql(s, rel->oid, tmpoid, &p->attrs);
}
