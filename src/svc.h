/*
 * svc.h: what the view services share (svc_*.c, swap*.c) and what the Lua
 * binding (lservices.c) fills in and reads back. The services are plain C
 * over pg.c: they take a definition and options, run SQL and fill an MvResp;
 * they never touch the Lua stack.
 * Memory: MvDefn/MvOpts strings belong to the caller (Lua strings kept on the
 * stack); everything an MvResp holds is malloc'd and freed by mv_resp_free.
 */
#ifndef MV_SVC_H
#define MV_SVC_H
#include <stddef.h>
#include <libpq-fe.h>
#include "pg.h"

#define SQLSTATE_DEPENDENT_OBJECTS  "2BP01"
#define SQLSTATE_DUPLICATE_TABLE    "42P07"
#define SQLSTATE_WRONG_OBJECT_TYPE  "42809"
#define SQLSTATE_ACTIVE_TRANSACTION "25001"
#define SQLSTATE_INVALID_NAME       "42602"
#define SQLSTATE_SYNTAX_ERROR       "42601"
#define SQLSTATE_OBJECT_STATE       "55000"
#define SQLSTATE_INVALID_PARAM      "22023"

typedef struct { char **v; int n, cap; } MvStrList;

/* Table privileges a definition may grant on its view, in SQL's words: the
 * GRANT statement is built from these constants, never from user text. */
extern const char *const mv_privilege_names[];   /* NULL-terminated */
/* The refresh strategies' names (vocab.h), indexed by MV_STRATEGY_*. */
extern const char *const mv_strategy_names[];
#define MV_PRIV_SELECT 1u

typedef enum { MV_RC_NONE, MV_RC_ESTIMATED, MV_RC_EXACT } MvRowCount;

typedef struct {
  const char *schema;            /* the definition's stored schema; NULL: current_schema() */
  size_t schema_len;
  const char *name;
  size_t name_len;
  const char *sql;               /* NULL when the definition has none */
  size_t sql_len;
  const char **unique_cols;      /* n_unique entries */
  int n_unique;
  const char ***indexes;         /* n_indexes arrays of columns, NULL-terminated */
  const char **index_names;      /* n_indexes declared names (NULL: <view>_idx<n>) */
  int *index_unique;             /* n_indexes flags: declared unique */
  const char **index_tails;      /* n_indexes: "USING ... (keys) ..." built by the Lua side, or NULL (columns) */
  int n_indexes;
  const char *comment;           /* NULL for none */
  const char **grant_roles;      /* n_grants roles ("PUBLIC" means the keyword) */
  unsigned *grant_privs;         /* n_grants masks of MV_PRIV_* bits */
  int n_grants;
  const char *nul_field;         /* a field whose string holds a NUL byte, or NULL */
} MvDefn;

typedef struct {
  MvRowCount row_count;
  int force, no_data, cascade, if_exists;
  int replace;                   /* swap_refresh replacing the view's SQL (apply): old indexes on dropped columns go */
  int lock_timeout_ms;
  int analyze;                   /* ANALYZE the view after filling it (default 1) */
} MvOpts;

typedef enum { MV_ST_ERROR, MV_ST_CREATED, MV_ST_UPDATED, MV_ST_DELETED, MV_ST_SKIPPED } MvStatus;

typedef struct {
  MvStatus status;
  char view[2 * 64 + 2];         /* "schema.rel", "" until resolved */
  MvStrList sql;                 /* statements that changed something */
  long long before, after;       /* row counts, -1 unknown */
  long long lock_ms;             /* swap only, -1 otherwise */
  long long analyze_ms;          /* the ANALYZE after filling, -1 when none ran */
  char *refresh;                 /* refresh actually run: "regular" | "concurrent" | "swap" */
  char *note;                    /* a sentence for the user, or NULL */
  MvStrList warnings;
  MvStrList rebuilt;             /* swap: dependents rebuilt */
  char *temp_relation;           /* swap: the build relation's name */
  char *err_message, *err_sqlstate, *err_detail, *err_hint;
} MvResp;

/* One service call: the connection, its inputs and the response it fills. */
typedef struct {
  PGconn *conn;
  const MvDefn *d;
  const MvOpts *o;
  MvResp *r;
  char schema[64];
  char *qview;                   /* "schema"."rel", quoted; malloc'd */
  int savepoint;                 /* svc_tx_begin used a savepoint */
} MvSvc;

/* A relation looked up by svc_lookup; its reltuples are read in the same
 * statement and used by the next estimated svc_count (count_fresh). */
typedef struct { unsigned oid; char relkind; int populated; long long reltuples; int count_fresh; } MvRel;

void mv_resp_init(MvResp *r);
void mv_resp_free(MvResp *r);
int mv_strlist_add(MvStrList *l, const char *s);
void mv_strlist_free(MvStrList *l);
char *mv_strdup(const char *s);

/* Validates the definition (schema, name; sql when need_sql), takes its
 * stored schema (else current_schema(), for ad-hoc tables) and quotes the
 * view name. 0 on success, -1 with the
 * response's error set. */
int svc_open(MvSvc *s, PGconn *conn, const MvDefn *d, const MvOpts *o, MvResp *r, int need_sql);
void svc_close(MvSvc *s);
/* Sets the response's error (copies every string; any may be NULL). */
void svc_fail(MvSvc *s, const char *msg, const char *sqlstate, const char *detail, const char *hint);
/* Sets the response's error from a failed result, keeping its fields. */
void svc_fail_res(MvSvc *s, const PGresult *res);
/* Runs sql; on failure sets the error and returns NULL; when log is set the
 * statement goes into response.sql. The caller clears the result. */
PGresult *svc_exec(MvSvc *s, const char *sql, int n, const char *const *vals, int log);
/* svc_exec for statements whose result is not needed: 0 or -1. */
int svc_run(MvSvc *s, const char *sql, int log);
/* Looks the view up in the resolved schema: 1 found (rel filled), 0 missing,
 * -1 on a database error. */
int svc_lookup(MvSvc *s, MvRel *rel);
/* The lookup's statement ($1 schema, $2 name), for a caller that sends it
 * in a pipeline, and the reading of its result (as svc_lookup returns). */
extern const char *const SVC_LOOKUP_SQL;
int svc_read_lookup(MvSvc *s, PGresult *res, MvRel *rel);
/* 0 when rel is a materialized view; else sets the error and returns -1. */
int svc_require_matview(MvSvc *s, int found, const MvRel *rel);
/* Row count of the view per the strategy (-1 unknown or none). */
long long svc_count(MvSvc *s, MvRel *rel);
/* After the view was filled: ANALYZE it (unless opts.analyze is off or it
 * is not populated; a failed ANALYZE is a warning, not an error), then its
 * row count, so `estimated` reads the fresh statistics. */
long long svc_count_after(MvSvc *s, MvRel *rel);
/* The two pipeline steps of that ANALYZE and the count after it (outside
 * any transaction; the count ends its transaction): steps[0..1], with
 * vals[0] and *sql (the ANALYZE, freed by the caller) kept by the caller
 * until they ran. -1 when out of memory. */
int svc_analyze_steps(MvSvc *s, PgStep *steps, const char **vals, char **sql);
/* Reads their results (ms: how long they took) as svc_count_after would:
 * returns the count after the view was filled. */
long long svc_analyze_taken(MvSvc *s, MvRel *rel, const char *sql, PGresult *analyzed, PGresult *counted, long long ms);
/* Transaction bracket: SAVEPOINT inside a caller's transaction, else BEGIN
 * (when outer) or nothing. */
int svc_tx_begin(MvSvc *s, int outer);
int svc_tx_end(MvSvc *s, int outer, int ok);
/* malloc'd "CREATE UNIQUE INDEX ... ON view (cols)" for the definition's
 * unique columns, or with a placeholder when it declares none. */
char *svc_unique_index_sql(MvSvc *s);
/* The columns quoted and joined with ", " (n of them, or up to the NULL
 * entry when n < 0); malloc'd, NULL when quoting fails. */
char *svc_column_list(MvSvc *s, const char *const *cols, int n);
/* printf into a malloc'd string (NULL on failure). */
char *mv_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Milliseconds from a monotonic clock. */
long long mv_now_ms(void);

void svc_create_view(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);
void svc_regular_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);
/* svc_regular_refresh in two halves, so that the caller works while the
 * server refreshes: _send returns 1 when the statements were sent (read by
 * _collect, which must follow before anything else is sent on c), 0 when
 * the response is complete already (an error, or a refresh inside a
 * transaction or with an exact count before, run whole). _collect fills
 * the rest of the response and frees what _send took, in both cases. */
typedef struct {
  MvSvc s;
  char *sql, *asql;              /* the REFRESH and the ANALYZE after it */
  const char *vals[2], *avals[1];
  long long refreshed_ms, counted_ms;
  PgStep steps[4];
  int n;
  PgPipe *pipe;                  /* sent and not read */
} SvcRefresh;
int svc_regular_refresh_send(SvcRefresh *f, PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);
void svc_regular_refresh_collect(SvcRefresh *f, int connected); /* connected 0: c was closed, nothing is read */
void svc_concurrent_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);
void svc_swap_refresh(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);
void svc_delete_view(PGconn *c, const MvDefn *d, const MvOpts *o, MvResp *r);

#endif
