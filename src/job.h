/*
 * job.h: what the units of a job share (jobs.c, job_attempts.c,
 * job_lock.c); private to them, not part of the core API (the one entry
 * point stays mv_register_jobs in core.h).
 * jobs.c owns the job (definition, run row, meta, core.jobs.run);
 * job_attempts.c one attempt of the service and the retries;
 * job_lock.c the view's advisory lock on the recorder.
 * Memory: a Job holds only fixed buffers and borrowed pointers (op, table
 * and strategy point to static strings, rec to the recorder connection the
 * spec's run_conn owns); Lua values live at the SLOT_* stack slots of l_run.
 */
#ifndef MV_JOB_H
#define MV_JOB_H
#include <stddef.h>
#include <lua.h>
#include <libpq-fe.h>

/* Stack slots of l_run. */
#define SLOT_SPEC     1   /* the job spec (argument) */
#define SLOT_OPTS     2   /* options passed to the service (conn set) */
#define SLOT_META     3   /* the run's meta */
#define SLOT_ATTEMPTS 4   /* meta.attempts */
#define SLOT_RESP     5   /* the final service response */

/* One job: what it runs, on which connections, and what it has measured;
 * filled by jobs.c, read by job_attempts.c and job_lock.c. */
typedef struct {
  const char *op;              /* "create" | "refresh" | "delete" */
  const char *table;           /* its run table */
  PGconn *rec;                 /* the recorder connection */
  long long defn_id;
  char name[256];              /* definition name */
  char schema[256];            /* its stored schema (part of the lock key) */
  const char *strategy;        /* "regular" | "concurrent" | "swap"; NULL: corrupt */
  char corrupt[400];           /* why the definition row is unusable, "" if it is not */
  char service[32];            /* mv.services.<service> */
  char lock_timeout[32];       /* e.g. "5000ms", for the service session */
  char statement_timeout[32];
  char row_count[16];          /* the definition's row count strategy, "" if none */
  char record_timeout[32];     /* lock_timeout of the recorder, e.g. "10000ms" */
  long long run_id;
  double t0;                   /* monotonic ms when the run started */
  double lock_wait_ms;
  char hostname[256];
} Job;

/* jobs.c */

/* CLOCK_MONOTONIC in milliseconds. */
double job_now_ms(void);
/* Integer field of the table at idx, or def when absent. */
long long job_opt_int(lua_State *L, int idx, const char *key, long long def);
/* Pushes a JSON-able copy of the value at idx (strings, numbers, booleans,
 * mv.null, tables of those); anything else becomes nil. */
void job_push_jsonable(lua_State *L, int idx, int depth);
/* Runs one statement on conn with up to 2 parameters; on failure copies the
 * message into err (when err is not NULL). Returns 1 on success. */
int job_exec_simple(PGconn *conn, const char *sql, int n, const char *const *vals,
                    char *err, size_t errlen, char *state);

/* job_attempts.c */

/* Pushes a service-shaped error response {status="error", success=false,
 * view, error={message, sqlstate}}; raised marks an exception. */
void job_push_error_response(lua_State *L, Job *job, const char *msg, const char *sqlstate, int raised);
/* Calls the service until it succeeds, fails for good, or attempts run out;
 * records each attempt in SLOT_ATTEMPTS; leaves the last response in
 * SLOT_RESP. */
void job_run_attempts(lua_State *L, Job *job);

/* job_lock.c */

/* Takes the view's advisory lock on the recorder, waiting up to wait_ms
 * (lock_timeout); 0 means do not wait. Returns 1, or 0 with err set. */
int job_lock_view(Job *job, long long wait_ms, char *err, size_t errlen);
/* Releases the view's advisory lock. */
void job_unlock_view(Job *job);

#endif
