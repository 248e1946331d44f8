-- The plan: what differs between the definition files, the catalog
-- (mat_view_definitions) and the live database, without changing anything.
-- Also the shared readers apply uses: the catalog rows decoded, the fields
-- that differ between two definitions, and a live view's indexes and grants.
--
-- The live view is compared with the definition apply would leave in the
-- catalog: the file when there is one, else the catalog row.
local dsl = require "matviews.dsl"
local cjson = require "cjson"

local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

-- Marks a table as a JSON array (written [] when empty) where the output
-- module can (matviews.output.array); else returns it as it is.
local array = require("matviews.output").array or function(t) return t or {} end

local null = cjson.null

-- Text values: NULL -> nil.
local function text(v)
  if v == null then return nil end
  return v
end

-- The catalog as { ["schema.name"] = definition (mv.definitions tables) },
-- the sorted keys, and whether the catalog is installed (empty when not).
function M.catalog(conn)
  local by_key, keys = {}, {}
  if not conn:query("SELECT to_regclass('mat_view_definitions') IS NOT NULL AS ok")[1].ok then
    return by_key, keys, false
  end
  for _, d in ipairs(require("matviews").definitions.list(conn)) do
    local key = d.schema_name .. "." .. d.name
    by_key[key] = d
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return by_key, keys, true
end

-- The catalog fields of a loaded file definition with its schema resolved
-- (the file's, else the default schema a save would use), its key
-- "schema.name" and the name shown to users: plain in the default schema,
-- qualified elsewhere.
function M.file_catalog(conn, def, default_schema)
  local fc = dsl.to_catalog(def)
  fc.schema_name = def.schema or default_schema
  local key = fc.schema_name .. "." .. def.name
  return fc, key, fc.schema_name == default_schema and def.name or key
end

-- Deep equality of decoded JSON-like values (1 == 1.0; cjson.null == nil).
local function same(a, b)
  if a == null then a = nil end
  if b == null then b = nil end
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k, v in pairs(b) do if a[k] == nil and not same(v, nil) then return false end end
  return true
end
M.same = same

-- The DSL keys whose values differ between the file's catalog fields (fc)
-- and the catalog row (row), in the documented key order.
function M.changed_fields(fc, row)
  local changed = array()
  local function check(field, a, b)
    if not same(a, b) then changed[#changed + 1] = dsl.KEY_OF_FIELD[field] end
  end
  check("sql", fc.sql, row.sql)
  check("refresh_strategy", fc.refresh_strategy, row.refresh_strategy)
  check("unique_index_columns", fc.unique_index_columns, row.unique_index_columns)
  check("indexes", fc.indexes, row.indexes)
  check("dependencies", fc.dependencies, row.dependencies)
  check("schedule_cron", fc.schedule_cron, row.schedule_cron)
  check("retention", fc.retention, row.retention)
  check("grants", fc.grants, row.grants)
  check("comment", fc.comment, row.comment)
  local seen = false
  for _, k in ipairs(changed) do seen = seen or k == "strategy" end
  if not seen and not same(fc.options.strategy, (row.options or {}).strategy) then changed[#changed + 1] = "strategy" end
  for _, k in ipairs(dsl.OPTION_KEYS) do -- each under its own key's name
    if not same(fc.options[k], (row.options or {})[k]) then changed[#changed + 1] = k end
  end
  return changed
end

-- The indexes a definition declares: its unique columns, then `indexes`
-- (each { name, columns, unique, using, include, where, sig }; unique_key
-- marks the one of `unique`).
function M.declared_indexes(d)
  local out, seen = {}, {}
  local function add(ix)
    local sig = table.concat({ ix.unique and "u" or "i", ix.using or "btree", table.concat(ix.columns, ","),
      table.concat(ix.include or {}, ","), ix.where or "" }, "|")
    if not seen[sig] then
      seen[sig] = true
      ix.sig = sig
      -- what --catalog-only compares a plain column index by
      local plain = (ix.using == nil or ix.using == "btree") and not ix.include and not ix.where
      for _, c in ipairs(ix.columns) do if require("matviews.indexes").is_expression(c) then plain = false end end
      ix.plain_sig = plain and ((ix.unique and "u:" or "i:") .. table.concat(ix.columns, ",")) or nil
      out[#out + 1] = ix
    end
  end
  if #d.unique_index_columns > 0 then
    add({ name = dsl.index_name(d.name, d.unique_index_columns, true), columns = d.unique_index_columns,
      unique = true, unique_key = true })
  end
  for _, ix in ipairs(d.indexes) do
    local cols = ix.columns or ix -- a bare array of columns is accepted too
    add({ name = ix.name or dsl.index_name(d.name, cols, ix.unique), columns = cols, unique = ix.unique or false,
      using = ix.using, include = ix.include, where = ix.where })
  end
  return out
end

-- The declared grants as a sorted array of { role, privilege }.
local function declared_grants(d)
  local out = {}
  for _, g in ipairs(d.grants) do
    local role = g.role:upper() == "PUBLIC" and "PUBLIC" or g.role
    for _, p in ipairs(g.privileges) do out[#out + 1] = { role = role, privilege = p } end
  end
  return out
end

-- Differences a - b of { role, privilege } arrays.
local function minus(a, b)
  local have, out = {}, {}
  for _, g in ipairs(b) do have[g.role .. "\0" .. g.privilege] = true end
  for _, g in ipairs(a) do if not have[g.role .. "\0" .. g.privilege] then out[#out + 1] = g end end
  return out
end

-- SQL of a grant or revoke on the relation rel (already quoted).
function M.grant_sql(conn, verb, g, rel)
  local who = g.role == "PUBLIC" and "PUBLIC" or conn:quote_ident(g.role)
  if verb == "grant" then return ("GRANT %s ON %s TO %s"):format(g.privilege, rel, who) end
  return ("REVOKE %s ON %s FROM %s"):format(g.privilege, rel, who)
end

-- SQL creating a declared index on rel (quoted).
function M.index_sql(conn, ix, rel)
  return require("matviews.indexes").create_sql(conn, ix, rel)
end

local CANDIDATE = "matviews_plan_candidate"

-- The server's normal form of sql (pg_get_viewdef of a temporary view made
-- in a transaction that is rolled back), or nil and the error message.
local function normal_sql(conn, sql)
  local mv = require "matviews"
  local rollback = {}
  local ok, res = pcall(mv.transaction, function(c)
    c:exec("CREATE TEMPORARY VIEW " .. CANDIDATE .. " AS " .. sql)
    local d = c:query("SELECT pg_get_viewdef('pg_temp." .. CANDIDATE .. "'::regclass) AS d")[1].d
    rollback.def = d
    error(rollback, 0)
  end, conn)
  if not ok and res == rollback then return rollback.def end
  return nil, error_message(res)
end

-- The live state of definition d (catalog fields) against the database:
-- { exists, relation = "schema.rel", sql_changed, sql_error,
--   indexes_missing = { {name, columns, unique} }, indexes_extra = { {name, definition} },
--   grants_missing = { {role, privilege} }, grants_extra = {...} }.
function M.live(conn, d)
  local rel = conn:query([[SELECT c.oid::regclass::text AS rel, n.nspname, c.relname, c.relkind::text AS kind
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = to_regclass($1)]], conn:quote_ident(d.schema_name) .. "." .. conn:quote_ident(d.name))[1]
  local out = { exists = rel ~= nil and rel.kind == "m", indexes_missing = array(), indexes_extra = array(),
    grants_missing = array(), grants_extra = array() }
  if not out.exists then
    if rel then out.not_matview = rel.rel end
    return out
  end
  out.relation = rel.nspname .. "." .. rel.relname
  out.quoted = conn:quote_ident(rel.nspname) .. "." .. conn:quote_ident(rel.relname)
  local live_def = conn:query("SELECT definition FROM pg_matviews WHERE schemaname = $1 AND matviewname = $2",
    rel.nspname, rel.relname)[1].definition
  local cand, err = normal_sql(conn, d.sql)
  if cand then out.sql_changed = cand ~= live_def else out.sql_error = err end
  local have = {}
  for _, ix in ipairs(conn:query([[SELECT i.relname AS name, x.indisunique AS uniq,
        pg_get_indexdef(x.indexrelid) AS definition,
        x.indexprs IS NOT NULL OR x.indpred IS NOT NULL AS complex,
        (SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum) AS cols
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE x.indrelid = $1::regclass ORDER BY i.relname]], out.quoted)) do
    local sig = ix.complex and ("x:" .. ix.definition) or ((ix.uniq and "u:" or "i:") .. text(ix.cols))
    have[sig] = have[sig] or {}
    table.insert(have[sig], { name = ix.name, definition = ix.definition })
  end
  for _, ix in ipairs(M.declared_indexes(d)) do
    if not ix.plain_sig then -- only `apply` (matviews.actions) compares the others
    elseif have[ix.plain_sig] then have[ix.plain_sig] = nil
    else out.indexes_missing[#out.indexes_missing + 1] = { name = ix.name, columns = ix.columns, unique = ix.unique } end
  end
  for _, list in pairs(have) do
    for _, ix in ipairs(list) do out.indexes_extra[#out.indexes_extra + 1] = ix end
  end
  table.sort(out.indexes_extra, function(a, b) return a.name < b.name end)
  local granted = conn:query([[SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS role,
        a.privilege_type AS privilege
      FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
     WHERE c.oid = $1::regclass AND a.grantee <> c.relowner ORDER BY 1, 2]], out.quoted)
  local want = declared_grants(d)
  out.grants_missing = array(minus(want, granted))
  -- grants are managed only for a view that declares some: hand-made grants
  -- on a view without a `grants` key (dashboards, ad-hoc readers) stay
  out.grants_extra = #want == 0 and array() or array(minus(granted, want))
  return out
end

-- True when the live state needs nothing.
local function live_in_sync(l)
  return l.exists and not l.sql_changed and not l.sql_error and #l.indexes_missing == 0
    and #l.indexes_extra == 0 and #l.grants_missing == 0 and #l.grants_extra == 0
end

-- What each difference leads to, as sentences.
local function actions(v)
  local a = array()
  if v.catalog == "missing" then a[#a + 1] = "apply would insert the definition"
  elseif v.catalog == "changed" then a[#a + 1] = "apply would update " .. table.concat(v.changed, ", ")
  elseif v.catalog == "orphan" then a[#a + 1] = "its file is gone: apply --prune would delete the definition" end
  local l = v.live
  if l.not_matview then a[#a + 1] = l.not_matview .. " exists but is not a materialized view: create would fail"
  elseif not l.exists then a[#a + 1] = "view missing: create would create it"
  else
    if l.sql_changed then a[#a + 1] = "SQL changed: refresh would replace the view with a swap" end
    if l.sql_error then a[#a + 1] = "SQL does not compile: " .. l.sql_error end
    for _, ix in ipairs(l.indexes_missing) do
      a[#a + 1] = ("index missing: apply would create %s (%s)"):format(ix.name, table.concat(ix.columns, ", "))
    end
    for _, ix in ipairs(l.indexes_extra) do a[#a + 1] = "index not declared: " .. ix.name .. " (apply leaves it)" end
    for _, g in ipairs(l.grants_missing) do a[#a + 1] = ("grant missing: apply would GRANT %s TO %s"):format(g.privilege, g.role) end
    for _, g in ipairs(l.grants_extra) do a[#a + 1] = ("grant not declared: apply would REVOKE %s FROM %s"):format(g.privilege, g.role) end
  end
  return a
end

-- The plan. opts: conn, definitions (dir). Returns
-- { in_sync = bool, catalog_installed = bool, views = { { name, file,
--   catalog = "missing"|"changed"|"same"|"orphan", changed = {keys}, live = {...},
--   in_sync = bool, actions = {...} } } }, or nil and the DSL errors.
function M.run(opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  local defs, errs = dsl.load_dir(opts.definitions)
  if not defs then return nil, errs end
  local cat, names, installed = M.catalog(conn)
  local default_schema = mv.definitions.default_schema(conn)
  local views, in_files = array(), {}
  for _, def in ipairs(defs) do
    local fc, key, shown = M.file_catalog(conn, def, default_schema)
    in_files[key] = true
    local row = cat[key]
    local v = { name = shown, file = def.file .. ":" .. def.line, changed = array() }
    if not row then v.catalog = "missing"
    else
      v.changed = M.changed_fields(fc, row)
      v.catalog = #v.changed > 0 and "changed" or "same"
    end
    v.live = M.live(conn, fc)
    views[#views + 1] = v
  end
  for _, key in ipairs(names) do
    if not in_files[key] then
      views[#views + 1] = { name = cat[key].label, catalog = "orphan", changed = array(), live = M.live(conn, cat[key]) }
    end
  end
  table.sort(views, function(a, b) return a.name < b.name end)
  local all = true
  for _, v in ipairs(views) do
    v.in_sync = v.catalog == "same" and live_in_sync(v.live)
    v.actions = actions(v)
    v.live.quoted = nil
    all = all and v.in_sync
  end
  return { in_sync = all, catalog_installed = installed, views = views }
end

return M
