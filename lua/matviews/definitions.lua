-- mv.definitions: the catalog of view definitions (mat_view_definitions).
-- save (insert or update by name), get (by name or id), list, delete; every
-- field is validated before any SQL runs, and a refused definition raises a
-- matviews error whose message starts with "invalid <field>" and whose
-- `field` names it. A definition table has the catalog's field names, with
-- refresh_strategy as "regular" | "concurrent" | "swap".
local core = require "matviews.core"
local cjson = require "cjson"

local M = {}

-- The catalog's vocabulary (defined once, in matviews.vocab), for every
-- module that speaks it (the DSL, the config, the CLI, the reports):
-- refresh strategies by name and by number, and the row count strategies.
local vocab = require "matviews.vocab"
M.STRATEGIES, M.STRATEGY_NAMES = vocab.STRATEGIES, vocab.STRATEGY_NAMES
local STRATEGY_NAMES = M.STRATEGY_NAMES
M.ROW_COUNT_LIST, M.ROW_COUNTS = vocab.ROW_COUNT_LIST, vocab.ROW_COUNTS

local function mv() return require "matviews" end

-- Raises the validation error for one field.
local function invalid(field, reason)
  core.error({ message = ("invalid %s: %s"):format(field, reason), field = field })
end

local function is_null(v) return v == nil or v == core.null end

-- An array of strings, each passing check (a validator returning ok, msg).
local function check_array(field, v, check)
  if is_null(v) then return {} end
  if type(v) ~= "table" then invalid(field, "must be an array") end
  local out = {}
  for i = 1, #v do
    if check then
      local ok, msg = check(v[i])
      if not ok then invalid(field, msg) end
    end
    out[i] = v[i]
  end
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then invalid(field, "must be an array") end
  end
  return out
end

local function name_check(s)
  local ok, msg = core.validate_name(s)
  return ok, msg and msg:gsub("^invalid name ", "")
end

-- A view name, plain or schema-qualified (schema.name).
local function qualified_check(s)
  if type(s) == "string" then
    local schema, name = s:match("^([^.]+)%.([^.]+)$")
    if schema then
      local ok, msg = name_check(schema)
      if not ok then return ok, msg end
      return name_check(name)
    end
  end
  return name_check(s)
end

-- A role or index name: any text of 1..63 bytes but a NUL byte (always quoted).
local function role_check(r)
  if type(r) ~= "string" or r == "" or #r > 63 or r:find("\0", 1, true) then
    return nil, "role names must be strings of 1 to 63 bytes without NUL bytes"
  end
  return true
end

-- Each entry of indexes: an array of keys or { columns = {...}, unique,
-- using, include, where, name } (see matviews.indexes).
local function index_check(ix)
  local ok, why = require("matviews.indexes").check(ix)
  if not ok then return nil, why end
  if ix.name ~= nil and not role_check(ix.name) then
    return nil, "an index name must be a string of 1 to 63 bytes without NUL bytes"
  end
  return true
end

M.PRIVILEGES = { SELECT = true, INSERT = true, UPDATE = true, DELETE = true,
  TRUNCATE = true, REFERENCES = true, TRIGGER = true }

-- Each entry of grants: a role name (SELECT) or { role = r, privileges = {...} }
-- (known privilege words, which are not quoted). Returns the normal form
-- { role, privileges } or nil and the reason.
local function grant_entry(g)
  if type(g) == "string" then g = { role = g, privileges = { "SELECT" } } end
  if type(g) ~= "table" then return nil, "entries must be role names or { role = ..., privileges = { ... } }" end
  local ok, msg = role_check(g.role)
  if not ok then return nil, msg end
  if type(g.privileges) ~= "table" or #g.privileges == 0 then return nil, "privileges of " .. g.role .. " must be a non-empty array" end
  local privs = {}
  for i, p in ipairs(g.privileges) do
    privs[i] = type(p) == "string" and p:upper() or ""
    if not M.PRIVILEGES[privs[i]] then return nil, ("'%s' is no privilege"):format(tostring(p)) end
  end
  return { role = g.role, privileges = privs }
end

local function optional(field, v, kind)
  if is_null(v) then return nil end
  if type(v) ~= kind then invalid(field, "must be a " .. kind) end
  if kind == "string" and v:find("\0", 1, true) then invalid(field, "contains a NUL byte") end
  return v
end

-- A retention policy ({ keep_last, keep_days, keep_failures }, or
-- { custom = true } for a definition file's function), or nil.
local function retention_check(v)
  v = optional("retention", v, "table")
  if v == nil or (v.custom == true and next(v, next(v)) == nil) then return v end
  local why = require("matviews.retention").check(v)
  if why then invalid("retention", "must be " .. why) end
  return v
end

-- A schedule: a cron expression the scheduler's own parser accepts.
local function cron_check(field, v)
  v = optional(field, v, "string")
  if v == nil then return nil end
  local ok, msg = core.cron_parse(v)
  if not ok then invalid(field, (msg:gsub("^invalid cron expression ", ""))) end
  return v
end

-- The options jobs read (jobs.c reads the timeouts as integers in ms; the
-- server takes at most 2147483647) and, for every other key, JSON data:
-- finite numbers, strings, booleans, tables of those.
local TIMEOUT_MAX = 2147483647
local function json_data(v, path)
  local t = type(v)
  if t == "number" and (v ~= v or v == math.huge or v == -math.huge) then
    invalid("options", path .. " must be a finite number")
  elseif t == "table" then
    for k, x in pairs(v) do json_data(x, path .. "." .. tostring(k)) end
  elseif t ~= "number" and t ~= "string" and t ~= "boolean" and not is_null(v) then
    invalid("options", ("%s must be JSON data, not a %s"):format(path, t))
  end
end
local function options_check(o)
  local rc = o.row_count
  if rc ~= nil and not M.ROW_COUNTS[rc] then
    invalid("options", "row_count must be " .. vocab.quoted(M.ROW_COUNT_LIST, " or "))
  end
  if o.analyze ~= nil and type(o.analyze) ~= "boolean" then
    invalid("options", "analyze must be a boolean")
  end
  if o.refresh_when ~= nil and o.refresh_when ~= "always" and o.refresh_when ~= "changed" then
    invalid("options", 'refresh_when must be "always" or "changed"')
  end
  if o.on_overlap ~= nil and not require("matviews.overlap").POLICIES[o.on_overlap] then
    invalid("options", 'on_overlap must be "wait", "skip" or "queue"')
  end
  for _, k in ipairs({ "lock_timeout_ms", "statement_timeout_ms" }) do
    local v = o[k]
    if v ~= nil and (type(v) ~= "number" or math.tointeger(v) == nil or v < 0 or v > TIMEOUT_MAX) then
      invalid("options", ("%s must be a whole number of milliseconds from 0 to %d, got %s")
        :format(k, TIMEOUT_MAX, type(v) == "string" and ("%q"):format(v) or tostring(v)))
    end
    if v ~= nil then o[k] = math.tointeger(v) end
  end
  for k, v in pairs(o) do json_data(v, tostring(k)) end
end

-- Validates tbl and returns the normalised definition (no SQL runs).
-- stored: tbl is a catalog row, checked for shape only (a concurrent one
-- may rely on a unique index made by hand).
function M.validate(tbl, stored)
  if type(tbl) ~= "table" then core.error("a definition must be a table") end
  local ok, msg = core.validate_name(tbl.name)
  if not ok then core.error({ message = msg, field = "name" }) end
  if not is_null(tbl.schema_name) then
    ok, msg = core.validate_name(tbl.schema_name)
    if not ok then core.error({ message = msg:gsub("^invalid name", "invalid schema"), field = "schema_name" }) end
  end
  ok, msg = core.validate_sql(tbl.sql)
  if not ok then core.error({ message = msg, field = "sql" }) end
  local strategy = is_null(tbl.refresh_strategy) and "regular" or tbl.refresh_strategy
  if math.type(strategy) == "integer" then strategy = STRATEGY_NAMES[strategy] or strategy end
  if M.STRATEGIES[strategy] == nil then
    invalid("refresh_strategy", ("must be %s (got %s)"):format(vocab.quoted(vocab.STRATEGY_LIST, " or "), tostring(strategy)))
  end
  local d = {
    schema_name = not is_null(tbl.schema_name) and tbl.schema_name or nil,
    name = tbl.name, sql = tbl.sql, refresh_strategy = strategy,
    unique_index_columns = check_array("unique_index_columns", tbl.unique_index_columns, name_check),
    dependencies = check_array("dependencies", tbl.dependencies, qualified_check),
    schedule_cron = cron_check("schedule_cron", tbl.schedule_cron),
    indexes = check_array("indexes", tbl.indexes, index_check),
    grants = check_array("grants", tbl.grants, nil),
    comment = optional("comment", tbl.comment, "string"),
    retention = retention_check(tbl.retention),
    options = optional("options", tbl.options, "table") or {},
  }
  if strategy == "concurrent" and #d.unique_index_columns == 0 and not stored then
    invalid("unique_index_columns", "a concurrent refresh needs at least one unique index column")
  end
  options_check(d.options)
  if d.schedule_cron then
    local parsed, why = core.cron_parse(d.schedule_cron)
    if not parsed then invalid("schedule_cron", why) end
  end
  for i, g in ipairs(d.grants) do
    local entry, why = grant_entry(g)
    if not entry then invalid("grants", why) end
    d.grants[i] = entry
  end
  return d
end

-- JSON for a jsonb array column ("[]" when empty: cjson would write "{}").
local function json_array(t)
  if #t == 0 then return "[]" end
  return cjson.encode(t)
end

local function json_object(t)
  if t == nil then return nil end
  if next(t) == nil then return "{}" end
  return cjson.encode(t)
end

-- A name fit for a one-line message: control characters become "?".
local function shown(v)
  if is_null(v) then return "NULL" end
  return (tostring(v):gsub("%c", "?"))
end

-- Raises the error for a catalog row that cannot be a definition, naming
-- the row: "definition 3 "mv_x" in mat_view_definitions is corrupt: ...".
local function corrupt(r, reason)
  core.error({ message = ('definition %s "%s" in mat_view_definitions is corrupt: %s')
    :format(shown(r.id), shown(r.name), reason), definition_id = r.id, definition = r.name })
end

-- The JSON text of a jsonb column as a value; `open` is the character the
-- text must start with ("[" array, "{" object), nullable columns may be
-- NULL. "{}" passes for an empty array: that is how cjson writes {}.
local function decode(r, field, open, nullable)
  local v = r[field]
  if is_null(v) then
    if nullable then return nil end
    corrupt(r, ("invalid %s: is NULL"):format(field))
  end
  local what = open == "[" and "a JSON array" or "a JSON object"
  if v:sub(1, 1) ~= open and v ~= "{}" then
    corrupt(r, ("invalid %s: must be %s (got %s)"):format(field, what, shown(v:sub(1, 60))))
  end
  local ok, t = pcall(cjson.decode, v)
  if not ok then corrupt(r, ("invalid %s: %s"):format(field, shown(t))) end
  return t
end

-- A catalog row as a definition table, checked as M.validate checks what
-- is saved; a row edited by hand into something else raises naming it.
local function from_row(r)
  local strategy = r.refresh_strategy
  if STRATEGY_NAMES[strategy] == nil then
    corrupt(r, ("unknown refresh_strategy %s (0 regular, 1 concurrent, 2 swap)"):format(shown(strategy)))
  end
  local raw = {
    schema_name = r.schema_name, name = r.name, sql = r.sql, refresh_strategy = STRATEGY_NAMES[strategy],
    unique_index_columns = decode(r, "unique_index_columns", "["),
    dependencies = decode(r, "dependencies", "["),
    schedule_cron = r.schedule_cron, indexes = decode(r, "indexes", "["), grants = decode(r, "grants", "["),
    comment = r.comment, retention = decode(r, "retention", "{", true), options = decode(r, "options", "{"),
  }
  local ok, d = pcall(M.validate, raw, true)
  if not ok then corrupt(r, type(d) == "table" and d.message or shown(d)) end
  d.id, d.created_at, d.updated_at = r.id, r.created_at, r.updated_at
  d.label = r.label or d.name
  return d
end

-- How a definition is named to users and between processes: its name, or
-- schema.name when another schema defines the same name (a label always
-- resolves back to its definition, see M.get).
-- label_sql(alias): that label in SQL, for the catalog table as `alias`.
function M.label_sql(a)
  return ([[CASE WHEN EXISTS (SELECT 1 FROM mat_view_definitions o_
    WHERE o_.name = A.name AND o_.schema_name <> A.schema_name AND o_.deleted_at IS NULL)
  THEN A.schema_name || '.' || A.name ELSE A.name END]]):gsub("A%.", a .. ".")
end
M.LABEL_SQL = M.label_sql("mat_view_definitions")

local ROW_COLUMNS = [[sql, refresh_strategy, unique_index_columns::text, dependencies::text,
  schedule_cron, indexes::text, grants::text, comment, retention::text, options::text,
  created_at::text, updated_at::text]]
local COLUMNS = [[id, schema_name, name, ]] .. M.LABEL_SQL .. [[ AS label, ]] .. ROW_COLUMNS
-- What the run recorder reads with a run's begin (one statement), and turns
-- into a definition with M.from_row: the definition is read once per run.
M.COLUMNS = COLUMNS
M.from_row = from_row

-- The schema a definition without one is saved in: the configuration's
-- `schema`, else the connection's current_schema() (public when
-- search_path names no existing schema).
function M.default_schema(conn)
  local cfg = mv().config().schema
  if cfg then return cfg end
  return conn:query("SELECT coalesce(current_schema(), 'public') AS s")[1].s
end

-- Splits "schema.name" into schema, name (schema nil for a plain name).
function M.split(ref)
  local schema, name = ref:match("^([^.]+)%.([^.]+)$")
  if schema then return schema, name end
  return nil, ref
end

-- Inserts or updates (by schema and name) a definition; returns the saved
-- definition. Without schema_name it goes to M.default_schema.
function M.save(tbl, conn)
  local d = M.validate(tbl)
  conn = conn or mv().conn()
  local schema = d.schema_name or M.default_schema(conn)
  local rows = conn:query([[
    INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns, dependencies,
      schedule_cron, indexes, grants, comment, retention, options, schema_name)
    VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7::jsonb, $8::jsonb, $9, $10::jsonb, $11::jsonb, $12)
    ON CONFLICT (schema_name, name) DO UPDATE SET sql = EXCLUDED.sql, refresh_strategy = EXCLUDED.refresh_strategy,
      unique_index_columns = EXCLUDED.unique_index_columns, dependencies = EXCLUDED.dependencies,
      schedule_cron = EXCLUDED.schedule_cron, indexes = EXCLUDED.indexes, grants = EXCLUDED.grants,
      comment = EXCLUDED.comment, retention = EXCLUDED.retention, options = EXCLUDED.options,
      deleted_at = NULL, updated_at = now()
    RETURNING ]] .. COLUMNS,
    d.name, d.sql, M.STRATEGIES[d.refresh_strategy], json_array(d.unique_index_columns),
    json_array(d.dependencies), d.schedule_cron, json_array(d.indexes), json_array(d.grants),
    d.comment, json_object(d.retention), json_object(d.options), schema)
  return from_row(rows[1])
end

-- Raises the usage error for a plain name defined in several schemas.
local function ambiguous(name, rows)
  local both = {}
  for i, r in ipairs(rows) do both[i] = r.schema_name .. "." .. r.name end
  core.error({ message = ("the name %s is ambiguous: it is defined as %s; qualify it (schema.name)")
    :format(name, table.concat(both, " and ")), exit = 2 })
end

-- The catalog row a name ("name" or "schema.name") or id means, as
-- { id, schema_name, name, label } without decoding the rest (so a row
-- corrupted by hand is still found, and named), or nil. A plain name
-- defined in several schemas raises a usage error naming them.
function M.find(name_or_id, conn)
  conn = conn or mv().conn()
  local sel = "SELECT id, schema_name, name, " .. M.LABEL_SQL .. " AS label FROM mat_view_definitions "
  if math.type(name_or_id) == "integer" then return conn:query(sel .. "WHERE id = $1 AND deleted_at IS NULL", name_or_id)[1] end
  if type(name_or_id) ~= "string" then
    core.error("definitions.get: expected a name or an integer id, got " .. type(name_or_id))
  end
  local schema, name = M.split(name_or_id)
  if not core.validate_name(name) or (schema and not core.validate_name(schema)) then return nil end
  if schema then
    return conn:query(sel .. "WHERE schema_name = $1 AND name = $2 AND deleted_at IS NULL", schema, name)[1]
  end
  local rows = conn:query(sel .. "WHERE name = $1 AND deleted_at IS NULL ORDER BY schema_name", name)
  if #rows > 1 then ambiguous(name, rows) end
  return rows[1]
end

-- The definition with that name (string: "name" or "schema.name") or id
-- (integer), or nil; see M.find.
function M.get(name_or_id, conn)
  conn = conn or mv().conn()
  local r = M.find(name_or_id, conn)
  if r == nil then return nil end
  local rows = conn:query("SELECT " .. COLUMNS .. " FROM mat_view_definitions WHERE id = $1", r.id)
  return rows[1] and from_row(rows[1]) or nil
end

-- Every definition, by name. Raises naming the first corrupt row, so the
-- commands that read the catalog call it first (M.check). The labels are
-- made here from the rows, as M.LABEL_SQL makes them (that subquery, once
-- per row, cost more than the rest of the statement at 100 definitions).
function M.list(conn)
  local out, schemas = {}, {}
  local rows = require("matviews.targets").query(conn or mv().conn(),
    "SELECT id, schema_name, name, " .. ROW_COLUMNS .. " FROM mat_view_definitions WHERE deleted_at IS NULL ORDER BY name, schema_name")
  for _, r in ipairs(rows) do
    if type(r.name) == "string" then schemas[r.name] = (schemas[r.name] or 0) + 1 end
  end
  for i, r in ipairs(rows) do
    -- (schema_name, name) is unique: another row of that name is in another schema
    if type(r.name) == "string" and schemas[r.name] > 1 then r.label = r.schema_name .. "." .. r.name end
    out[i] = from_row(r)
  end
  return out
end
M.check = M.list

-- Deletes the definition, softly: the row gets deleted_at and every
-- reader of the catalog skips it; its runs and versions stay (saving the
-- same schema and name again brings it back). True when one was deleted.
function M.delete(name, conn)
  if type(name) ~= "string" then core.error("definitions.delete: expected a name") end
  conn = conn or mv().conn()
  local d = M.find(name, conn)
  if not d then return false end
  return conn:exec("UPDATE mat_view_definitions SET deleted_at = now(), updated_at = now() WHERE id = $1", d.id) > 0
end

-- What the services take: a table passes through; a name or id is looked up
-- (raising when there is no such definition). A string that is not a valid
-- name becomes { name = s }, which the service refuses before any SQL runs.
function M.resolve(defn, conn)
  if type(defn) == "table" then return defn end
  if type(defn) == "string" and not core.validate_name(select(2, M.split(defn))) then return { name = defn } end
  if type(defn) ~= "string" and math.type(defn) ~= "integer" then
    core.error("a definition (name, id or table) is required")
  end
  local d = M.get(defn, conn)
  if d == nil then
    core.error(type(defn) == "string" and ('no definition named "%s"'):format(defn)
      or ("no definition with id %d"):format(defn))
  end
  return d
end

return M
