/*
 * vocab.h: the names matviews's C side shares with its Lua side, defined
 * once (lua/matviews/vocab.lua holds the same; spec/vocab_spec.lua reads
 * this file and checks that both agree). Status codes of the run tables,
 * the operations and their run tables, the refresh strategies (by their
 * number in mat_view_definitions.refresh_strategy), the row count
 * strategies, the advisory lock key of a view and the name of a swap's
 * build relation.
 */
#ifndef MV_VOCAB_H
#define MV_VOCAB_H

/* Run status codes (the seed's): index = code. */
enum { MV_RUN_PENDING = 0, MV_RUN_RUNNING = 1, MV_RUN_SUCCESS = 2, MV_RUN_FAILED = 3 };
#define MV_RUN_STATUS_NAMES { "pending", "running", "success", "failed" }

/* Operations and their run tables, in the same order. */
enum { MV_OP_CREATE = 0, MV_OP_REFRESH = 1, MV_OP_DELETE = 2, MV_N_OPS = 3 };
#define MV_OP_NAMES { "create", "refresh", "delete" }
#define MV_RUN_TABLE_NAMES { "mat_view_create_runs", "mat_view_refresh_runs", "mat_view_delete_runs" }

/* Refresh strategies: index = refresh_strategy. */
enum { MV_STRATEGY_REGULAR = 0, MV_STRATEGY_CONCURRENT = 1, MV_STRATEGY_SWAP = 2, MV_N_STRATEGIES = 3 };
#define MV_STRATEGY_NAMES { "regular", "concurrent", "swap" }

/* Row count strategies: index = MvRowCount (svc.h). */
#define MV_ROW_COUNT_NAMES { "none", "estimated", "exact" }
#define MV_ROW_COUNT_NAMES_NULL { "none", "estimated", "exact", NULL }

/* The status of a service response: index = MvStatus (svc.h). */
#define MV_SERVICE_STATUS_NAMES { "error", "created", "updated", "deleted", "skipped" }

/* The advisory lock key of a view, in SQL over its schema and name (the
 * parameters or columns given): the same on every machine, and a.mv_x and
 * b.mv_x do not wait for each other. */
#define MV_LOCK_KEY_SQL(schema, name) "hashtextextended('matviews:' || " schema " || '.' || " name ", 0)"

/* A swap's build relation: MV_BUILD_PREFIX <name> _ <backend pid>, <name>
 * cut so that the whole fits in 63 bytes (swap_temp_name). */
#define MV_BUILD_PREFIX "mv_swap_"
/* The same name in SQL over a name and a pid expression (reconcile and the
 * swap's own clean-up find build relations with it). */
#define MV_BUILD_RELATION_SQL(name, pid) "'" MV_BUILD_PREFIX "' || left(" name ", 63 - length('" MV_BUILD_PREFIX \
  "') - length('_' || " pid ")) || '_' || " pid

#endif
