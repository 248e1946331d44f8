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

-- One name, id (integer or digits) or "schema.rel" -> { id, name = label,
-- schema_name } (the label is what the other commands print and pass on).
-- A plain name defined in several schemas is a usage error naming them; a
-- qualified name with no definition names the materialized view that
-- exists there without one.
function M.resolve_one(conn, x)
  local defs = require "matviews.definitions"
  local id = math.tointeger(x) or (type(x) == "string" and x:match("^%d+$") and math.tointeger(tonumber(x)))
  M.query(conn, "SELECT 1 FROM mat_view_definitions LIMIT 0") -- says so when the catalog is missing
  if id then
    local d = defs.find(id, conn)
    if not d then M.usage(("no definition with id %d"):format(id)) end
    return { id = d.id, name = d.label, schema_name = d.schema_name }
  end
  if type(x) ~= "string" or x == "" then M.usage("a view name or id is needed") end
  local schema, rel = defs.split(x)
  local ok, why = require("matviews.core").validate_name(rel)
  if ok and schema then ok, why = require("matviews.core").validate_name(schema) end
  if not ok then M.usage(why) end
  local d = defs.find(x, conn)
  if d then return { id = d.id, name = d.label, schema_name = d.schema_name } end
  if schema then
    local m = conn:query([[SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = $2]], schema, rel)[1]
    if m and m.relkind == "m" then
      M.usage(("materialized view %s exists but has no definition"):format(x))
    end
    M.usage(("no definition for %s"):format(x))
  end
  M.usage(("no definition named %s"):format(x))
end

-- Every definition { id, name } in dependency order, the one graph of
-- matviews.deps (what the database records, through plain views, plus the
-- declared dependencies): each after everything it reads, ties by name.
-- reverse = true gives readers first (for delete).
function M.all(conn, reverse)
  local deps = require "matviews.deps"
  local g = deps.load(conn)
  local order = deps.order(g)
  if not reverse then order = M.creation_order(conn, g, order) end
  local out = {}
  for _, name in ipairs(order) do
    table.insert(out, reverse and 1 or #out + 1, { id = g.nodes[name].id, name = name })
  end
  return out
end

-- The order to create in when some views do not exist yet: pg_depend knows
-- nothing of them, so the definitions are rehearsed (matviews.rehearsal:
-- created WITH NO DATA in a rolled-back transaction, each once what it
-- reads exists) and that order is used. order (the graph's) is kept when
-- every view exists or the rehearsal finds a definition it cannot create.
function M.creation_order(conn, g, order)
  -- one statement for the whole batch: whether any view is missing
  local missing = conn:query([[SELECT EXISTS (SELECT 1 FROM mat_view_definitions d WHERE d.deleted_at IS NULL
    AND to_regclass(quote_ident(d.schema_name) || '.' || quote_ident(d.name)) IS NULL) AS missing]])[1].missing
  if not missing then return order end
  local defs = require("matviews").definitions.list(conn)
  local file_defs, label_of = {}, {}
  for _, d in ipairs(defs) do
    file_defs[#file_defs + 1] = require("matviews.dsl").from_catalog(d, "catalog", 0)
    label_of[d.schema_name .. "." .. d.name] = d.label
  end
  local rep = require("matviews.rehearsal").run(conn, file_defs)
  if #rep.errors > 0 or not rep.order then return order end
  local by_shown, out = {}, {}
  for _, e in ipairs(rep.list) do by_shown[e.shown] = e.key end
  for _, shown in ipairs(rep.order) do
    local label = label_of[by_shown[shown]]
    if label and g.nodes[label] then out[#out + 1] = label end
  end
  return #out == #order and out or order
end

-- What a command asked for: args.names (array), args.id (array), args.all.
-- Returns an array of { id, name } without duplicates, in command-line
-- order (--all: dependency order, reversed when opts.reverse; nothing
-- when opts.graph_only, for a caller that reads the graph itself).
function M.resolve(conn, args, opts)
  local names, ids = args.names or {}, args.id or {}
  local kinds = (#names > 0 and 1 or 0) + (#ids > 0 and 1 or 0) + (args.all and 1 or 0)
  if kinds == 0 then M.usage("give view NAMEs, --id N or --all") end
  if kinds > 1 then M.usage("give view NAMEs, --id N or --all, not several of them") end
  if args.all and opts and opts.graph_only then return {} end -- the caller reads the graph itself
  if args.all then return M.all(conn, opts and opts.reverse) end
  local out, seen = {}, {}
  for _, x in ipairs(#names > 0 and names or ids) do
    local d = M.resolve_one(conn, x)
    if not seen[d.id] then seen[d.id] = true; out[#out + 1] = d end
  end
  return out
end

return M
