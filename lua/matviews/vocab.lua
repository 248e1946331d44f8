-- The names matviews's Lua side shares with its C side, defined once
-- (src/vocab.h holds the same; spec/vocab_spec.lua checks that they agree).
-- Every other module refers to these tables.
local M = {}

-- Run status codes of the seed: code -> name and name -> code.
M.STATUS = { [0] = "pending", [1] = "running", [2] = "success", [3] = "failed" }
M.STATUS_CODE = {}
for code, name in pairs(M.STATUS) do M.STATUS_CODE[name] = code end

-- The operations (in the order reports list them) and their run tables.
M.OPS = { "create", "refresh", "delete" }
M.RUN_TABLES = { create = "mat_view_create_runs", refresh = "mat_view_refresh_runs",
                 delete = "mat_view_delete_runs" }

-- Refresh strategies: refresh_strategy number -> name and name -> number.
M.STRATEGY_NAMES = { [0] = "regular", [1] = "concurrent", [2] = "swap" }
M.STRATEGIES = {}
for n, name in pairs(M.STRATEGY_NAMES) do M.STRATEGIES[name] = n end

-- Row count strategies, in the order help texts list them, and as a set.
M.ROW_COUNT_LIST = { "none", "estimated", "exact" }
M.ROW_COUNTS = {}
for _, s in ipairs(M.ROW_COUNT_LIST) do M.ROW_COUNTS[s] = true end

-- The status of a service response.
M.SERVICE_STATUS = { "error", "created", "updated", "deleted", "skipped" }

-- The advisory lock key of a view, in SQL over its schema and name.
function M.lock_key_sql(schema, name)
  return ("hashtextextended('matviews:' || %s || '.' || %s, 0)"):format(schema, name)
end

-- A swap's build relation: BUILD_PREFIX .. <name> .. "_" .. <backend pid>,
-- <name> cut so that the whole fits in 63 bytes.
M.BUILD_PREFIX = "mv_swap_"
function M.build_relation_sql(name_expr, pid_expr)
  return ("'%s' || left(%s, 63 - length('%s') - length('_' || %s)) || '_' || %s")
    :format(M.BUILD_PREFIX, name_expr, M.BUILD_PREFIX, pid_expr, pid_expr)
end

return M
