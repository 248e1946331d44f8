-- Which definitions a command or a report means: NAMEs (plain or
-- schema-qualified), ids, or all of them. Resolution is all or nothing: the
-- first name that does not resolve raises an error table with exit = 2
-- (a usage error: nothing has been run), naming it.
local M = {}

local catalog = require "matviews.catalog"
M.STATUS = catalog.STATUS
M.STATUS_CODE = catalog.STATUS_CODE

-- Raises a usage error (exit code 2) with message.
function M.usage(message)
  require("matviews").error({ message = message, exit = 2 })
end

-- conn:query(sql, ...) over the catalog; a missing catalog table becomes
-- an error that says to run `matviews init`.
function M.query(conn, sql, ...)
  local ok, rows = pcall(conn.query, conn, sql, ...)
  if ok then return rows end
  if type(rows) == "table" and rows.sqlstate == "42P01" and tostring(rows.message):match('"mat_view_') then
    require("matviews").error({ message = "the matviews catalog is not installed in this database: run `matviews init`" })
  end
  error(rows, 0)
end

-- The schema a definition's view lives in: where it exists on search_path,
-- else where it would be created (current_schema()).
local SCHEMA_SQL = [[
SELECT coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = to_regclass(quote_ident($1))), current_schema()) AS schema]]

-- Resolves "schema.rel": the definition named rel when its view lives (or
-- would live) in schema; an error naming a materialized view without one.
local function resolve_qualified(conn, schema, rel, given)
  local d = M.query(conn, "SELECT id, name FROM mat_view_definitions WHERE name = $1", rel)[1]
  if d and conn:query(SCHEMA_SQL, rel)[1].schema == schema then return d end
  local m = conn:query([[SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relname = $2]], schema, rel)[1]
  if m and m.relkind == "m" then
    M.usage(("materialized view %s exists but has no definition"):format(given))
  end
  M.usage(("no definition for %s"):format(given))
end

-- One name, id (integer or digits) or "schema.rel" -> { id, name }.
function M.resolve_one(conn, x)
  local id = math.tointeger(x) or (type(x) == "string" and x:match("^%d+$") and math.tointeger(tonumber(x)))
  if id then
    local d = M.query(conn, "SELECT id, name FROM mat_view_definitions WHERE id = $1", id)[1]
    if not d then M.usage(("no definition with id %d"):format(id)) end
    return d
  end
  if type(x) ~= "string" or x == "" then M.usage("a view name or id is needed") end
  local schema, rel = x:match("^([^.]+)%.([^.]+)$")
  local ok, why = require("matviews.core").validate_name(rel or x)
  if not ok then M.usage(why) end
  if schema then return resolve_qualified(conn, schema, rel, x) end
  local d = M.query(conn, "SELECT id, name FROM mat_view_definitions WHERE name = $1", x)[1]
  if not d then M.usage(("no definition named %s"):format(x)) end
  return d
end

-- Every definition { id, name } in dependency order, the one graph of
-- matviews.deps (what the database records, through plain views, plus the
-- declared dependencies): each after everything it reads, ties by name.
-- reverse = true gives readers first (for delete).
function M.all(conn, reverse)
  local deps = require "matviews.deps"
  local g = deps.load(conn)
  local out = {}
  for _, name in ipairs(deps.order(g)) do
    table.insert(out, reverse and 1 or #out + 1, { id = g.nodes[name].id, name = name })
  end
  return out
end

-- What a command asked for: args.names (array), args.id (array), args.all.
-- Returns an array of { id, name } without duplicates, in command-line
-- order (--all: dependency order, reversed when opts.reverse).
function M.resolve(conn, args, opts)
  local names, ids = args.names or {}, args.id or {}
  local kinds = (#names > 0 and 1 or 0) + (#ids > 0 and 1 or 0) + (args.all and 1 or 0)
  if kinds == 0 then M.usage("give view NAMEs, --id N or --all") end
  if kinds > 1 then M.usage("give view NAMEs, --id N or --all, not several of them") end
  if args.all then return M.all(conn, opts and opts.reverse) end
  local out, seen = {}, {}
  for _, x in ipairs(#names > 0 and names or ids) do
    local d = M.resolve_one(conn, x)
    if not seen[d.id] then seen[d.id] = true; out[#out + 1] = d end
  end
  return out
end

return M
