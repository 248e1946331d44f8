-- Index declarations: what a definition's `indexes` entry may say and the
-- SQL it becomes. An entry (normalised by the DSL, stored in the catalog):
--   { name = "...", columns = { key, ... }, unique = bool,
--     using = "btree"|"hash"|"gin"|"gist"|"brin"|"spgist",
--     include = { column, ... }, where = "predicate" }
-- A key is a column name (always quoted, whatever it holds) or, written in
-- parentheses, an expression ("(lower(email))", "((a + b))"), as
-- CREATE INDEX itself writes them. Expressions and predicates are SQL from the definition file,
-- like the view's own SQL; they go through the extended protocol, one
-- statement only.
local M = {}

M.METHODS = { btree = true, hash = true, gin = true, gist = true, brin = true, spgist = true }
M.METHOD_LIST = { "btree", "hash", "gin", "gist", "brin", "spgist" }

-- True when key is an expression (written in parentheses), not a column.
function M.is_expression(key)
  return key:sub(1, 1) == "(" and key:sub(-1) == ")"
end

-- A key as SQL: a quoted column or the expression as written.
local function key_sql(conn, key)
  if M.is_expression(key) then return key end
  return conn:quote_ident(key)
end

-- True when ix needs more than a list of quoted columns (method, INCLUDE,
-- WHERE or an expression): the C services then take its tail as SQL.
function M.needs_tail(ix)
  if (ix.using and ix.using ~= "btree") or ix.where or (ix.include and #ix.include > 0) then return true end
  for _, k in ipairs(ix.columns or ix) do if type(k) == "string" and M.is_expression(k) then return true end end
  return false
end

-- What follows "ON relation" in CREATE INDEX: method, keys, INCLUDE, WHERE.
function M.tail(conn, ix)
  local keys, inc = {}, {}
  for i, k in ipairs(ix.columns) do keys[i] = key_sql(conn, k) end
  for i, k in ipairs(ix.include or {}) do inc[i] = conn:quote_ident(k) end
  local s = ("USING %s (%s)"):format(ix.using or "btree", table.concat(keys, ", "))
  if #inc > 0 then s = s .. " INCLUDE (" .. table.concat(inc, ", ") .. ")" end
  if ix.where then s = s .. " WHERE (" .. ix.where .. ")" end
  return s
end

-- CREATE [UNIQUE] INDEX name ON rel (quoted) <tail>; name defaults to ix.name.
function M.create_sql(conn, ix, rel, name)
  return ("CREATE %sINDEX %s ON %s %s"):format(ix.unique and "UNIQUE " or "",
    conn:quote_ident(name or ix.name), rel, M.tail(conn, ix))
end

-- Checks one declared entry (catalog form); returns true or nil, reason.
function M.check(ix)
  if type(ix) ~= "table" then return nil, "each index must be an array of column names" end
  local cols = ix.columns or ix
  if type(cols) ~= "table" or #cols == 0 then return nil, "each index must name at least one column" end
  for _, c in ipairs(cols) do
    if type(c) ~= "string" or c == "" then return nil, "index columns must be non-empty strings" end
    if c:find("\0", 1, true) then return nil, "an index column contains a NUL byte" end
  end
  if ix.using ~= nil and not M.METHODS[ix.using] then
    return nil, ("using must be one of %s"):format(table.concat(M.METHOD_LIST, ", "))
  end
  if ix.where ~= nil and (type(ix.where) ~= "string" or ix.where == "" or ix.where:find("\0", 1, true)) then
    return nil, "where must be a non-empty SQL predicate"
  end
  if ix.include ~= nil then
    if type(ix.include) ~= "table" then return nil, "include must be an array of column names" end
    for _, c in ipairs(ix.include) do
      if type(c) ~= "string" or c == "" or c:find("\0", 1, true) then
        return nil, "include must be an array of column names"
      end
    end
  end
  return true
end

return M
