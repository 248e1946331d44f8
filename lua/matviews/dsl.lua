-- The definition DSL: loads definitions/*.lua, where each file declares
-- views with `view "name" { sql = ..., strategy = ..., ... }`. Files run in
-- an environment of their own holding the DSL words and safe standard
-- functions only (no io, os, require or mv). Every problem (a Lua error, an
-- unknown key, a wrong type, a bad strategy, an invalid cron expression, a
-- name declared twice) is reported as file:line with the key; a load with
-- any problem returns no definitions at all.
local config = require "matviews.config"

local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

-- Raises a matviews error table (message [, sqlstate]).
local function raise(e) require("matviews.core").error(e) end

local definitions = require "matviews.definitions"
local vocab = require "matviews.vocab"
local STRATEGIES = definitions.STRATEGIES
local ROW_COUNTS = definitions.ROW_COUNTS
local PRIVILEGES = definitions.PRIVILEGES

-- The keys a view may set, in the order they are documented.
M.KEYS = { "sql", "schema", "strategy", "unique", "indexes", "depends_on", "schedule",
  "retention", "grants", "comment", "row_count", "lock_timeout_ms", "statement_timeout_ms", "analyze", "audit", "on_overlap", "refresh_when" }
-- The keys kept in the catalog's `options` (jsonb), under the same names;
-- the file owns them (apply writes them, plan compares them).
M.OPTION_KEYS = { "row_count", "lock_timeout_ms", "statement_timeout_ms", "analyze", "audit", "on_overlap", "refresh_when" }
local KNOWN = {}
for _, k in ipairs(M.KEYS) do KNOWN[k] = true end

---------------------------------------------------------------------------
-- Normalisation of each key's value; each returns value or nil, reason.

local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- An array of column names (a single string is one column).
local function columns(v)
  if type(v) == "string" then v = { v } end
  if not is_array(v) then return nil, "an array of column names" end
  local out = {}
  for i, c in ipairs(v) do
    if type(c) ~= "string" or c == "" then return nil, "an array of column names (item " .. i .. ")" end
    out[i] = c
  end
  return out
end

-- FNV-1a of s as 8 hex digits (stable short suffix for long names).
local function fnv(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return ("%08x"):format(h)
end

-- The index name for view and keys: <view>_<keys>_idx (or _key when
-- unique; an expression's non-word characters become _), at most 63 bytes
-- (longer names end in a hash of the full one).
function M.index_name(view, cols, unique)
  local parts = {}
  for i, c in ipairs(cols) do parts[i] = (c:gsub("[^%w_]+", "_"):gsub("^_+", ""):gsub("_+$", "")) end
  local name = view .. "_" .. table.concat(parts, "_") .. (unique and "_key" or "_idx")
  if #name > 63 then name = name:sub(1, 54) .. "_" .. fnv(name) end
  return name
end

local normalise = {}

function normalise.sql(v)
  if type(v) ~= "string" then return nil, "a string" end
  v = v:gsub("^%s+", ""):gsub("[%s;]+$", "")
  if v == "" then return nil, "a non-empty SELECT" end
  return v
end

-- schema = "analytics": the schema the view lives in (a simple identifier).
function normalise.schema(v)
  if type(v) ~= "string" then return nil, "a schema name (string)" end
  local ok, why = require("matviews.core").validate_name(v)
  if not ok then return nil, "a schema name (" .. why:gsub("^invalid name ", "") .. ")" end
  return v
end

-- A built-in strategy, or one a `strategy "name"` declares (in any file:
-- checked once every file is loaded).
function normalise.strategy(v)
  if STRATEGIES[v] or (type(v) == "string" and v:match("^[%a_][%w_]*$")) then return v end
  return nil, "one of " .. vocab.quoted(vocab.STRATEGY_LIST) .. " or a declared strategy name"
end

-- audit = { min_rows = 1, ... }: see matviews.audit.
function normalise.audit(v)
  local why = require("matviews.audit").check(v)
  if why then return nil, why end
  return v
end

normalise.unique = columns

local INDEX_KEYS = { unique = "boolean", using = "string", where = "string", include = "table", name = "string" }

-- indexes = { { "a", "b" }, "c", { "d", unique = true },
--   { "j", using = "gin" }, { "lower(email)", where = "active", include = { "id" }, name = "..." } }
function normalise.indexes(v, name)
  if not is_array(v) then return nil, "an array of indexes (each an array of column names)" end
  local out = {}
  for i, ix in ipairs(v) do
    local opts = {}
    if type(ix) == "table" then
      for k, x in pairs(ix) do
        if math.type(k) ~= "integer" then
          if not INDEX_KEYS[k] then
            return nil, ("an array of indexes (index %d: unknown key '%s'; keys are columns, unique, using, include, where, name)")
              :format(i, tostring(k))
          end
          if type(x) ~= INDEX_KEYS[k] then
            return nil, ("an array of indexes (index %d: %s must be a %s)"):format(i, k, INDEX_KEYS[k])
          end
          opts[k] = x
        end
      end
      ix = table.move(ix, 1, #ix, 1, {})
    end
    local cols = columns(ix)
    if not cols or #cols == 0 then return nil, ("an array of indexes (index %d: an array of column names)"):format(i) end
    local entry = { name = opts.name or M.index_name(name, cols, opts.unique), columns = cols,
      unique = opts.unique or false, using = opts.using, where = opts.where }
    if opts.include then
      local inc = columns(opts.include)
      if not inc then return nil, ("an array of indexes (index %d: include must be an array of column names)"):format(i) end
      entry.include = inc
    end
    local ok, why = require("matviews.indexes").check(entry)
    if not ok then return nil, ("an array of indexes (index %d: %s)"):format(i, why) end
    out[i] = entry
  end
  return out
end

normalise.depends_on = columns

-- The expression itself is checked with the catalog's fields, by the
-- scheduler's parser (mv.core.cron_parse).
function normalise.schedule(v)
  if type(v) ~= "string" then return nil, "a cron expression (string)" end
  return v
end

function normalise.retention(v)
  local why = require("matviews.retention").check(v)
  if why then return nil, why end
  return v
end

-- grants = { "reporting" } (SELECT) or { reporting = "SELECT", app = { "SELECT", "REFERENCES" } }
-- -> array of { role = ..., privileges = { ... } } sorted by role.
function normalise.grants(v)
  if type(v) ~= "table" then return nil, 'a table of grants ({ "role" } or { role = "SELECT" })' end
  local by_role = {}
  for k, p in pairs(v) do
    local role, privs
    if math.type(k) == "integer" then role, privs = p, { "SELECT" } else role, privs = k, p end
    if type(role) ~= "string" or role == "" then return nil, "a table of grants (role names are strings)" end
    if type(privs) == "string" then privs = { privs } end
    if not is_array(privs) or #privs == 0 then return nil, "a table of grants (privileges of " .. role .. ")" end
    local set = by_role[role] or {}
    for _, priv in ipairs(privs) do
      local up = type(priv) == "string" and priv:upper() or ""
      if not PRIVILEGES[up] then return nil, "a table of grants ('" .. tostring(priv) .. "' is no privilege)" end
      set[up] = true
    end
    by_role[role] = set
  end
  local out = {}
  for role, set in pairs(by_role) do
    local privs = {}
    for p in pairs(set) do privs[#privs + 1] = p end
    table.sort(privs)
    out[#out + 1] = { role = role, privileges = privs }
  end
  table.sort(out, function(a, b) return a.role < b.role end)
  return out
end

function normalise.comment(v)
  if type(v) ~= "string" then return nil, "a string" end
  return v
end

function normalise.row_count(v)
  if not ROW_COUNTS[v] then return nil, "one of " .. vocab.quoted(definitions.ROW_COUNT_LIST) end
  return v
end

-- A number of milliseconds: a non-negative integer (0: no limit).
local function millis(v)
  if math.type(v) ~= "integer" or v < 0 then return nil, "a non-negative integer (milliseconds)" end
  return v
end
normalise.lock_timeout_ms = millis

function normalise.refresh_when(v)
  if v ~= "always" and v ~= "changed" then return nil, 'one of "always", "changed"' end
  return v
end

function normalise.on_overlap(v)
  if not require("matviews.overlap").POLICIES[v] then return nil, 'one of "wait", "skip", "queue"' end
  return v
end

function normalise.analyze(v)
  if type(v) ~= "boolean" then return nil, "a boolean" end
  return v
end
normalise.statement_timeout_ms = millis

---------------------------------------------------------------------------
-- Loading.

-- Shows v in a message: strings quoted, other values by type.
local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return type(v)
end

-- Path as the user typed it: relative to the working directory when under it.
local function display(path)
  local ok, cwd = pcall(function() return require("matviews.core").sys.getcwd() end)
  if ok and path:sub(1, #cwd + 1) == cwd .. "/" then return path:sub(#cwd + 2) end
  return path
end
M.display = display

-- Checks one view's body; adds errors, returns the definition or nil.
local function check_view(state, name, body, line, schema)
  local file, errs = state.file, state.errors
  local function fail(key, msg)
    local at = key and config.locate(state.text, key, line) or line
    errs[#errs + 1] = ("%s:%d: view '%s': %s"):format(file, at, schema and (schema .. "." .. name) or name, msg)
  end
  if type(body) ~= "table" then
    fail(nil, "expected a table after the name (view \"" .. name .. "\" { sql = ... }), got " .. type(body))
    return nil
  end
  local def = { name = name, schema = schema, file = file, line = line, strategy = "regular", unique = {},
    indexes = {}, depends_on = {}, grants = {} }
  if schema and body.schema ~= nil and body.schema ~= schema then
    fail("schema", ("key 'schema' says %s but the name says %s"):format(show(body.schema), schema))
    return nil
  end
  local ok = true
  local keys = {}
  for k in pairs(body) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = body[k]
    if type(k) ~= "string" then
      fail(nil, "unexpected positional value " .. show(v) .. " (write key = value)"); ok = false
    elseif not KNOWN[k] then
      local near = config.closest(k, M.KEYS)
      fail(k, "unknown key '" .. k .. "'" .. (near and (" (did you mean '" .. near .. "'?)") or ""))
      ok = false
    else
      local val, want = normalise[k](v, name)
      if val == nil then
        fail(k, ("key '%s' must be %s, got %s"):format(k, want, show(v))); ok = false
      else
        def[k] = val
      end
    end
  end
  if body.sql == nil then fail(nil, "key 'sql' is required"); ok = false end
  if body.strategy ~= nil then def.strategy_line = config.locate(state.text, "strategy", line) end
  if ok and def.strategy == "concurrent" and #def.unique == 0 then
    fail("strategy", "key 'strategy' is \"concurrent\", which needs unique columns (unique = { ... })"); ok = false
  end
  if ok and def.audit and (def.strategy == "regular" or def.strategy == "concurrent") then
    fail("audit", ("key 'audit' checks a build before it is published, and strategy \"%s\" does not build "
      .. "(use strategy = \"swap\", or a strategy that calls ctx:build())"):format(def.strategy)); ok = false
  end
  if ok then -- what the catalog itself refuses (SQL shape, column names)
    local valid, err = pcall(require("matviews.definitions").validate, M.to_catalog(def))
    if not valid then
      local key = type(err) == "table" and M.KEY_OF_FIELD[err.field]
      local msg = error_message(err)
      if key then msg = "key '" .. key .. "': " .. msg:gsub("^invalid [%w_]+: ", "") end
      fail(key, msg); ok = false
    end
  end
  return ok and def or nil
end

-- The environment of a definition file: DSL words and safe functions.
local function environment(state)
  local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
  local env = {
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
    pairs = pairs, ipairs = ipairs, next = next, tostring = tostring, tonumber = tonumber,
    type = type, select = select, error = error, assert = assert, pcall = pcall,
  }
  -- strategy "name" (function(ctx) ... end): registered for every file
  function env.strategy(name)
    local line = debug.getinfo(2, "l").currentline
    return function(fn)
      local ok, e = pcall(require("matviews.strategies").define, name, fn, state.file, line, false, true)
      if not ok then state.errors[#state.errors + 1] = error_message(e) end
    end
  end
  -- view "name" { ... }
  -- view "name" { ... } or view "schema.name" { ... }
  function env.view(qname)
    local line = debug.getinfo(2, "l").currentline
    if type(qname) ~= "string" then error("view name must be a string, got " .. type(qname), 2) end
    local schema, name = qname:match("^([^.]+)%.([^.]+)$")
    name = name or qname
    local ok, why = require("matviews.core").validate_name(name)
    if ok and schema then
      ok, why = require("matviews.core").validate_name(schema)
      if not ok then why = why:gsub("^invalid name", "invalid schema") end
    end
    if not ok then error(why, 2) end
    local call = { name = qname, line = line }
    state.pending[call] = true
    return function(body)
      state.pending[call] = nil
      local def = check_view(state, name, body, line, schema)
      if not def then return end
      local key = (def.schema or "") .. "." .. name
      local prev = state.seen[key]
      if prev then
        state.errors[#state.errors + 1] = ("%s:%d: view '%s': already declared at %s:%d"):format(
          state.file, line, qname, prev.file, prev.line)
        return
      end
      state.seen[key] = def
      state.defs[#state.defs + 1] = def
    end
  end
  return env
end

-- The .lua files of dir, sorted by name. Raises when dir cannot be read.
function M.files(dir)
  local names, err = require("matviews.core").sys.listdir(dir)
  if not names then raise({ message = "cannot read definitions directory " .. err }) end
  local out = {}
  for _, n in ipairs(names) do
    if n:match("%.lua$") and not n:match("^%.") then out[#out + 1] = n end
  end
  table.sort(out)
  return out
end

-- Loads every definition file of dir (default: the configured directory).
-- Returns defs (array sorted by file then position, each with file and line)
-- or nil, the array of error messages ("file:line: view 'x': ...") and the
-- definitions that did load.
function M.load_dir(dir)
  dir = dir or config.definitions_dir()
  local state = { defs = {}, errors = {}, seen = {} }
  for _, n in ipairs(M.files(dir)) do
    local path = dir:gsub("/+$", "") .. "/" .. n
    state.text = assert(require("matviews.files").read(path))
    state.file = display(path)
    local chunk, err = load(state.text, "@" .. state.file, "t", environment(state))
    if not chunk then
      state.errors[#state.errors + 1] = err
    else
      state.pending = {}
      local ok, e = pcall(config.bounded, "definition file", chunk)
      if not ok then state.errors[#state.errors + 1] = error_message(e)
      else
        local calls = {}
        for call in pairs(state.pending) do calls[#calls + 1] = call end
        table.sort(calls, function(a, b) return a.line < b.line end)
        for _, call in ipairs(calls) do
          state.errors[#state.errors + 1] = ("%s:%d: view '%s': no body (view \"%s\" { sql = ... })"):format(
            state.file, call.line, call.name, call.name)
        end
      end
    end
  end
  local strategies = require "matviews.strategies"
  for _, def in ipairs(state.defs) do
    if not strategies.get(def.strategy) then
      state.errors[#state.errors + 1] = ("%s:%d: view '%s': unknown strategy \"%s\" (declared: %s)"):format(
        def.file, def.strategy_line or def.line, def.schema and (def.schema .. "." .. def.name) or def.name, def.strategy,
        table.concat(strategies.names(), ", "))
    end
  end
  if #state.errors > 0 then return nil, state.errors, state.defs end
  return state.defs
end

-- The catalog `options` of a loaded definition: its OPTION_KEYS that are set.
function M.options_of(def)
  local o = {}
  for _, k in ipairs(M.OPTION_KEYS) do o[k] = def[k] end
  return o
end

-- The catalog fields of a loaded definition (the table mv.definitions and
-- mat_view_definitions use).
function M.to_catalog(def)
  local retention = def.retention
  if type(retention) == "function" then retention = { custom = true } end
  local options = M.options_of(def)
  local builtin = STRATEGIES[def.strategy] ~= nil
  if not builtin then options.strategy = def.strategy end -- a declared strategy: by name, over a regular refresh
  return {
    schema_name = def.schema,
    name = def.name,
    sql = def.sql,
    refresh_strategy = builtin and def.strategy or "regular",
    unique_index_columns = def.unique,
    dependencies = def.depends_on,
    schedule_cron = def.schedule,
    indexes = def.indexes,
    grants = def.grants,
    comment = def.comment,
    retention = retention,
    options = options,
  }
end

-- A loaded definition (what load_dir returns) from catalog fields (a
-- decoded definition: mv.definitions tables, or a version row decoded), as
-- if declared at file:line: what the rehearsal of the catalog and
-- `rollback` take.
function M.from_catalog(d, file, line)
  local options = type(d.options) == "table" and d.options or {}
  local def = {
    name = d.name, schema = d.schema_name, sql = d.sql,
    strategy = options.strategy or definitions.STRATEGY_NAMES[d.refresh_strategy] or d.refresh_strategy,
    unique = d.unique_index_columns or {}, depends_on = d.dependencies or {},
    schedule = d.schedule_cron, indexes = d.indexes or {}, grants = d.grants or {},
    comment = d.comment, retention = d.retention, file = file, line = line,
  }
  for _, k in ipairs(M.OPTION_KEYS) do def[k] = options[k] end
  return def
end

-- DSL key of each catalog field, for reports ("updated (sql, schedule)").
M.KEY_OF_FIELD = {
  sql = "sql", schema_name = "schema", refresh_strategy = "strategy", unique_index_columns = "unique",
  dependencies = "depends_on", schedule_cron = "schedule", indexes = "indexes",
  grants = "grants", comment = "comment", retention = "retention", options = "row_count",
}

return M
