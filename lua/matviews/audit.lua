-- Write-audit-publish: the checks a definition declares (`audit = { ... }`)
-- run on the build relation before it is published (ctx:publish, so the
-- swap strategy and any strategy that builds). Every check's result goes
-- into the run's meta.audit, passed ones too; the first failure stops the
-- refresh, the old contents stay, and the run's error names the check with
-- its numbers ("rows 0 < min_rows 1").
--
--   audit = { min_rows = 1, max_row_change = 0.5, not_null = { "user_id" },
--             unique = { "user_id" }, sql = { "select count(*) = 0 from {new} where total < 0" } }
local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

-- The keys an audit may have, and what each must be.
M.KEYS = { min_rows = "a whole number", max_row_change = "a number (0.5 = 50%)",
  not_null = "an array of column names", unique = "an array of column names",
  sql = "an array of SQL queries returning one boolean ({new} is the build relation)" }

-- nil when audit is well formed, else why not.
function M.check(audit)
  if type(audit) ~= "table" then return "a table of checks" end
  for k, v in pairs(audit) do
    local want = M.KEYS[k]
    if not want then return ("no check named '%s' (min_rows, max_row_change, not_null, unique, sql)"):format(tostring(k)) end
    local ok
    if k == "min_rows" then ok = math.type(v) == "integer" and v >= 0
    elseif k == "max_row_change" then ok = type(v) == "number" and v >= 0
    else
      ok = type(v) == "table"
      for _, x in ipairs(type(v) == "table" and v or {}) do ok = ok and type(x) == "string" end
    end
    if not ok then return ("'%s' must be %s"):format(k, want) end
  end
  return nil
end

-- Checks audit against rel (the quoted relation with the view's new
-- columns, made by plan's rehearsal, in its transaction; it need not be
-- populated: nothing is run). not_null and unique must name columns of the
-- view; each sql check must plan with {new} standing for rel and return
-- exactly one column, a boolean (M.describe). Returns the problems as
-- { key = "not_null"|"unique"|"sql", message }.
function M.validate(conn, audit, rel)
  local out, have, names = {}, {}, {}
  for _, r in ipairs(conn:query([[SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass
      AND attnum > 0 AND NOT attisdropped ORDER BY attnum]], rel)) do
    have[r.name] = true
    names[#names + 1] = r.name
  end
  for _, key in ipairs({ "not_null", "unique" }) do
    for _, c in ipairs(audit[key] or {}) do
      if not have[c] then
        out[#out + 1] = { key = key, message = ("audit %s: the view has no column %s (columns: %s)")
          :format(key, c, table.concat(names, ", ")) }
      end
    end
  end
  for i, sql in ipairs(audit.sql or {}) do
    local why = M.describe(conn, (sql:gsub("{new}", function() return rel end)))
    if why then out[#out + 1] = { key = "sql", message = ("audit sql %d %s: %s"):format(i, why, sql) } end
  end
  return out
end

-- Why sql cannot be an audit check (it does not plan, it writes, or it
-- does not return exactly one boolean column), or nil. Nothing is run: the
-- server describes the statement (conn:describe, PQdescribePrepared) and
-- plans it (EXPLAIN: a ModifyTable node anywhere is a write), in a
-- savepoint of the caller's transaction.
function M.describe(conn, sql)
  local cols, writes
  conn:exec("SAVEPOINT matviews_audit")
  local ok, e = pcall(function()
    cols = conn:describe(sql)
    local plan = conn:query("EXPLAIN (COSTS OFF, FORMAT JSON) " .. sql)[1]
    writes = plan and tostring(plan["QUERY PLAN"]):find('"Node Type": "ModifyTable"', 1, true) ~= nil
  end)
  if not ok then
    conn:exec("ROLLBACK TO SAVEPOINT matviews_audit")
    conn:exec("RELEASE SAVEPOINT matviews_audit")
    return "does not plan (" .. error_message(e) .. ")"
  end
  conn:exec("RELEASE SAVEPOINT matviews_audit")
  if writes then return "must only read (it writes: INSERT, UPDATE, DELETE or MERGE)" end
  if #cols == 1 and cols[1].type_oid == 16 then return nil end -- 16: boolean
  local types = {}
  for i, c in ipairs(cols) do types[i] = conn:query("SELECT format_type($1::oid, NULL) AS t", c.type_oid)[1].t end
  return ("must return exactly one boolean column, it returns (%s)"):format(table.concat(types, ", "))
end

-- The quoted, comma-joined columns.
local function cols(conn, list)
  local q = {}
  for i, c in ipairs(list) do q[i] = conn:quote_ident(c) end
  return table.concat(q, ", ")
end

-- Runs every check on ctx.new; records them in ctx.audit; raises at the
-- first failed one.
function M.gate(ctx)
  local audit = (ctx.definition.options or {}).audit
  if audit == nil then return end
  local conn, new, results = ctx._job.options.conn, ctx.new, {}
  ctx.audit = results
  local failed
  local function record(r)
    results[#results + 1] = r
    if not r.passed and not failed then failed = r end
  end
  local rows = conn:query("SELECT count(*) AS n FROM " .. new)[1].n
  if audit.min_rows then
    record({ check = "min_rows", passed = rows >= audit.min_rows, rows = rows, min_rows = audit.min_rows,
      message = ("rows %d < min_rows %d"):format(rows, audit.min_rows) })
  end
  if audit.max_row_change then
    local prev = ctx.previous and ctx.previous.rows_count
    if math.type(prev) == "integer" and prev > 0 then
      local change = math.abs(rows - prev) / prev
      record({ check = "max_row_change", passed = change <= audit.max_row_change, rows = rows, previous_rows = prev,
        change = change, max_row_change = audit.max_row_change,
        message = ("row change %.2f > max_row_change %s (rows %d, previous %d)"):format(change, audit.max_row_change, rows, prev) })
    else
      record({ check = "max_row_change", passed = true, rows = rows, skipped = "no previous run with rows" })
    end
  end
  for _, c in ipairs(audit.not_null or {}) do
    local n = conn:query(("SELECT count(*) AS n FROM %s WHERE %s IS NULL"):format(new, conn:quote_ident(c)))[1].n
    record({ check = "not_null", column = c, passed = n == 0, null_rows = n,
      message = ("not_null %s: %d rows are NULL"):format(c, n) })
  end
  if audit.unique and #audit.unique > 0 then
    local k = cols(conn, audit.unique)
    local n = conn:query(("SELECT count(*) AS n FROM (SELECT 1 FROM %s GROUP BY %s HAVING count(*) > 1) d"):format(new, k))[1].n
    record({ check = "unique", columns = audit.unique, passed = n == 0, duplicated_keys = n,
      message = ("unique (%s): %d keys appear more than once"):format(table.concat(audit.unique, ", "), n) })
  end
  for i, sql in ipairs(audit.sql or {}) do
    local r = conn:query((sql:gsub("{new}", function() return new end)))
    local row = r[1]
    local cols_of = getmetatable(r) and getmetatable(r).columns or {}
    if #r ~= 1 or #cols_of ~= 1 or type(row[cols_of[1]]) ~= "boolean" then
      require("matviews.core").error(("audit sql %d must return exactly one boolean: %s"):format(i, sql))
    end
    record({ check = "sql", sql = sql, passed = row[cols_of[1]],
      message = ("audit sql %d is false: %s"):format(i, sql) })
  end
  if failed then
    require("matviews.core").error({ message = "audit failed: " .. failed.message .. "; the old contents stay",
      audit = results })
  end
end

return M
