-- The names matviews's Lua side shares with its C side, defined once
-- (src/vocab.h holds the same; spec/vocab_spec.lua checks that they agree).
-- Every other module refers to these tables.
local M = {}

-- The names of a code -> name table ([0] first) as a list, in code order.
local function in_order(names)
  local list = {}
  for code = 0, #names do list[code + 1] = names[code] end
  return list
end

-- Run status codes of the seed: code -> name and name -> code.
M.STATUS = { [0] = "pending", [1] = "running", [2] = "success", [3] = "failed" }
M.STATUS_CODE = {}
for code, name in pairs(M.STATUS) do M.STATUS_CODE[name] = code end
M.STATUS_LIST = in_order(M.STATUS)

-- Job status codes of the queue (matviews_jobs.status): the run statuses
-- plus 4, a pending job cancelled by `matviews queue cancel` (never claimed:
-- a claim takes pending ones only). Lua alone speaks them.
M.JOB_STATUS = { [0] = "pending", [1] = "running", [2] = "success", [3] = "failed", [4] = "cancelled" }
M.JOB_STATUS_CODE = {}
for code, name in pairs(M.JOB_STATUS) do M.JOB_STATUS_CODE[name] = code end
M.JOB_STATUS_LIST = in_order(M.JOB_STATUS)

-- SQL text with each {name} replaced by the code of that status (codes:
-- M.STATUS_CODE by default, or M.JOB_STATUS_CODE) and each {<op>_runs} by
-- the op's run table. These are constants, written into a module's SQL once
-- when it loads (a literal, not a $n: the planner then matches partial
-- indexes such as the queue's WHERE status = 0). An unknown name raises.
function M.sql(text, codes)
  codes = codes or M.STATUS_CODE
  return (text:gsub("{([%l_]+)}", function(name)
    local v = codes[name] or M.RUN_TABLES[name:match("^(%l+)_runs$") or ""]
    return tostring(v or error(("unknown name {%s} in SQL"):format(name), 3))
  end))
end

-- The operations (in the order reports list them) and their run tables.
M.OPS = { "create", "refresh", "delete" }
M.RUN_TABLES = { create = "mat_view_create_runs", refresh = "mat_view_refresh_runs",
                 delete = "mat_view_delete_runs" }
M.OPS_TEXT = table.concat(M.OPS, ", ", 1, #M.OPS - 1) .. " or " .. M.OPS[#M.OPS] -- as messages list them

-- Refresh strategies: refresh_strategy number -> name and name -> number.
M.STRATEGY_NAMES = { [0] = "regular", [1] = "concurrent", [2] = "swap" }
M.STRATEGIES = {}
for n, name in pairs(M.STRATEGY_NAMES) do M.STRATEGIES[name] = n end
M.STRATEGY_LIST = in_order(M.STRATEGY_NAMES)

-- Row count strategies, in the order help texts list them, and as a set.
M.ROW_COUNT_LIST = { "none", "estimated", "exact" }
M.ROW_COUNTS = {}
for _, s in ipairs(M.ROW_COUNT_LIST) do M.ROW_COUNTS[s] = true end

-- Names as a message lists them: '"a", "b" or "c"' with last = " or ",
-- '"a", "b", "c"' without.
function M.quoted(list, last)
  local q = {}
  for i, s in ipairs(list) do q[i] = '"' .. s .. '"' end
  if not last or #q < 2 then return table.concat(q, ", ") end
  return table.concat(q, ", ", 1, #q - 1) .. last .. q[#q]
end

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
