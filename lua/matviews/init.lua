-- matviews: the `mv` API that scripts, specs, the CLI and the REPL use.
-- Wraps matviews.core (C: connections, services, jobs, embedded database)
-- and adds the Lua-side pieces: default connection, transactions, db control.
local core = require "matviews.core"
local cjson = require "cjson"
local files = require "matviews.files"

local M = {
  core = core,
  version = core.version,
  null = core.null,           -- the same light userdata as cjson.null
  json = cjson,
  error = core.error,
  is_error = core.is_error,
  error_message = core.error_message,
  connect = core.connect,
  options = package.loaded["matviews.options"] or {},
}

-- The project directory: the nearest ancestor of the working directory that
-- holds matviews.lua (or the directory of --config), else the working directory.
function M.project_dir()
  if M.options.config then
    return (M.options.config:match("^(.*)/[^/]*$")) or core.sys.getcwd()
  end
  local dir = core.sys.getcwd()
  local d = dir
  while d and d ~= "" do
    if files.exists(d .. "/matviews.lua") then return d end
    d = d:match("^(.*)/[^/]*$")
  end
  return dir
end

-- Where the embedded cluster lives: $MATVIEWS_HOME or <project>/.matviews.
function M.embedded_dir()
  local home = os.getenv("MATVIEWS_HOME")
  if home and home ~= "" then return home end
  return M.project_dir() .. "/.matviews"
end

local PG_VARS = { "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE" }

-- The connection string, first that is set: --dsn, the parent's (in a
-- child process, see matviews.child), the config's, DATABASE_URL, libpq's
-- PG* variables (""), else the embedded default (started if needed).
function M.default_dsn()
  if M.options.dsn then return M.options.dsn, "dsn" end
  local parent = os.getenv(require("matviews.child").DSN_VAR)
  if parent and parent ~= "" then return parent, "parent" end
  local cfg = M.config()
  if cfg.dsn then return cfg.dsn, "config" end
  local url = os.getenv("DATABASE_URL")
  if url and url ~= "" then return url, "DATABASE_URL" end
  for _, v in ipairs(PG_VARS) do
    local x = os.getenv(v)
    if x and x ~= "" then return "", "environment" end
  end
  local dir = M.embedded_dir()
  local st = core.embed_status(dir)
  if not st.running and not files.exists(st.data_dir .. "/PG_VERSION") then
    local cwd = core.sys.getcwd() .. "/"
    local shown = dir:sub(1, #cwd) == cwd and dir:sub(#cwd + 1) or dir
    io.stderr:write(("matviews: starting the embedded PostgreSQL in %s/ (first use)\n"):format(shown))
  end
  return core.embed_ensure(dir), "embedded"
end

-- The index just past the keyword value starting at s[j]: a single-quoted
-- value or a run of non-blanks, backslash escaping a character in both.
local function value_end(s, j)
  local quoted = s:sub(j, j) == "'"
  if quoted then j = j + 1 end
  while j <= #s do
    local c = s:sub(j, j)
    if c == "\\" then j = j + 1
    elseif quoted and c == "'" then return j + 1
    elseif not quoted and c:match("%s") then return j end
    j = j + 1
  end
  return j
end

-- A connection string fit to print: the password of a URL
-- (scheme://user:pw@host, ?password=) or of a password=... keyword
-- (quoted or not) is replaced by ***.
function M.redact_dsn(dsn)
  local s = tostring(dsn or "")
  if s:match("^%a[%w+.-]*://") then
    s = s:gsub("^(%a[%w+.-]*://[^:/@?]*):[^@/?]*@", "%1:***@")
    return (s:gsub("([?&]password=)[^&]*", "%1***"))
  end
  local out, i = {}, 1
  while true do
    local a, b = s:find("%f[%w]password%s*=%s*", i)
    if not a then break end
    out[#out + 1] = s:sub(i, b) .. "***"
    i = value_end(s, b + 1)
  end
  out[#out + 1] = s:sub(i)
  return table.concat(out)
end

local default_conn

-- The default connection, opened on first use. --verbose says where to.
-- early: a connection opened here is returned under way (core.connect's
-- early), so that its backend starts while this process goes on; the next
-- M.conn() completes it, and connects again, saying why, if it failed.
function M.conn(early)
  if default_conn == nil or not default_conn:is_open() then
    local dsn, source = M.default_dsn()
    if M.options.verbose then
      io.stderr:write(("matviews: connecting to %s (%s)\n"):format(dsn == "" and "PG* environment" or M.redact_dsn(dsn), source))
    end
    M.config() -- its connect_wait_ms applies
    default_conn = core.connect(dsn, early)
  end
  return default_conn
end

-- Replaces the default connection (closing the old one); conninfo or a conn.
-- A conninfo is remembered (M.used_dsn) for child processes (refresh_all).
function M.use(c)
  if default_conn and default_conn ~= c then default_conn:close() end
  M.used_dsn = type(c) == "string" and c or nil
  if type(c) == "string" then c = core.connect(c) end
  default_conn = c
  return c
end

function M.query(sql, ...) return M.conn():query(sql, ...) end
function M.exec(sql, ...) return M.conn():exec(sql, ...) end

local savepoints = 0

-- Runs fn(conn) in a transaction: commit on return, rollback and re-raise on
-- error. Nested calls use a savepoint. Returns fn's results.
function M.transaction(fn, conn)
  conn = conn or M.conn()
  local nested = conn:info().in_transaction
  local sp
  if nested then
    savepoints = savepoints + 1
    sp = "mv_sp_" .. savepoints
    conn:exec("SAVEPOINT " .. sp)
  else
    conn:exec("BEGIN")
  end
  local res = table.pack(xpcall(fn, function(e)
    if type(e) == "string" then return debug.traceback(e, 2) end
    return e
  end, conn))
  if res[1] then
    conn:exec(nested and ("RELEASE SAVEPOINT " .. sp) or "COMMIT")
    return table.unpack(res, 2, res.n)
  end
  if conn:is_open() then
    pcall(conn.exec, conn, nested and ("ROLLBACK TO SAVEPOINT " .. sp) or "ROLLBACK")
  end
  error(res[2], 0)
end

-- The project configuration (matviews.lua), defaults filled in.
function M.config() return require("matviews.config").load() end

-- Installs or upgrades the catalog (idempotent); see matviews.catalog.
function M.init(conn) return require("matviews.catalog").init(conn) end

-- Reports over the run tables (see matviews.reports): arrays of rows.
function M.runs(opts) return require("matviews.reports").runs(opts) end
function M.stats(opts) return require("matviews.reports").stats(opts) end
-- The data of `matviews report` (matviews.report): views, charts' points,
-- last runs, failures, dependency graph.
function M.report(opts) return require("matviews.report").data(opts) end
-- Deletes run history beyond the retention policies; see matviews.retention.
function M.prune(opts) return require("matviews.retention").prune(opts) end

-- Definitions CRUD over the catalog (matviews.definitions).
M.definitions = require "matviews.definitions"

-- The view services (C, synchronous, no run rows): each takes a definition
-- (name, id or table) and opts; opts.conn defaults to the default connection,
-- opts.analyze (ANALYZE the view after filling it) to the definition's
-- `analyze` option, else the configuration's (default true).
-- Database errors come back in the response table, never raised.
-- create_view with opts.replace = true replaces a live view's SQL through
-- the swap (built beside, put in place in one short transaction, dependents
-- rebuilt): that is what `apply` runs, recorded as a create run with
-- meta.replaced = true.
M.services = {}

-- The definition with each index's SQL tail (method, keys, INCLUDE, WHERE)
-- composed here (matviews.indexes), for the C services; a copy.
local function with_index_tails(d, conn)
  if type(d) ~= "table" or type(d.indexes) ~= "table" or #d.indexes == 0 then return d end
  local t, ixs = {}, {}
  for k, v in pairs(d) do t[k] = v end
  for i, ix in ipairs(d.indexes) do
    local c = {}
    if type(ix) == "table" then for k, v in pairs(ix) do c[k] = v end end
    if type(ix) == "table" and type(ix.columns or ix) == "table" and require("matviews.indexes").needs_tail(ix) then
      local ok, tail = pcall(require("matviews.indexes").tail, conn, { columns = ix.columns or ix,
        using = ix.using, include = ix.include, where = ix.where })
      if ok and not tail:find("\0", 1, true) then c.tail = tail end -- NUL: C reports the field
    end
    ixs[i] = c
  end
  t.indexes = ixs
  return t
end

-- The options service `name` gets for definition defn: a copy of opts, the
-- connection defaulted, and (but for delete_view) `analyze` from opts, else
-- the definition's option, else the configuration's. Returns the
-- definition (resolved) and the options.
function M.service_options(name, defn, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.conn = o.conn or M.conn()
  local d = M.definitions.resolve(defn, o.conn)
  if o.analyze == nil and name ~= "delete_view" then
    local own = nil
    if type(d.options) == "table" then own = d.options.analyze end
    if own == nil or own == core.null then own = M.config().analyze end
    o.analyze = own ~= false
  end
  return d, o
end

for _, name in ipairs({ "create_view", "regular_refresh", "concurrent_refresh", "swap_refresh", "delete_view" }) do
  M.services[name] = function(defn, opts)
    local d, o = M.service_options(name, defn, opts)
    if name == "create_view" and o.replace then
      local r = core.services.swap_refresh(d, o)
      r.request.replaced = true
      if r.success then r.status = "created" end
      return r
    end
    if name == "create_view" then d = with_index_tails(d, o.conn) end
    return core.services[name](d, o)
  end
end

-- regular_refresh in two halves (see svc.h): sent = regular_refresh_send(
-- defn, opts) sends the statements; sent:collect() returns the response.
function M.services.regular_refresh_send(defn, opts)
  return core.services.regular_refresh_send(M.service_options("regular_refresh", defn, opts))
end

-- Jobs (recorded runs), their hooks, and reconciliation of orphaned runs.
M.jobs = require "matviews.jobs"
M.hooks = require "matviews.hooks"
function M.create(ref, opts) return M.jobs.create(ref, opts) end
function M.refresh(ref, opts) return M.jobs.refresh(ref, opts) end
function M.delete(ref, opts) return M.jobs.delete(ref, opts) end
function M.reconcile(conn) return M.jobs.reconcile(conn) end

-- Deploys the definition files: mv.apply{ definitions = dir, prune, cascade,
-- dry_run } converges the database to them (matviews.converge) and mv.plan{}
-- previews it (matviews.actions); both return the same actions (each
-- { action, view, detail, sql, line }, apply's with status), plus notes,
-- errors, valid and in_sync.
function M.apply(opts) return require("matviews.converge").apply(opts) end
function M.plan(opts) return require("matviews.actions").plan(opts) end

-- Refreshes many views in dependency order, on opts.parallel processes;
-- see matviews.parallel.
function M.refresh_all(opts) return require("matviews.parallel").refresh_all(opts) end

-- Control of the embedded cluster.
M.db = {
  start = function() return core.embed_ensure(M.embedded_dir()) end,
  stop = function() return core.embed_stop(M.embedded_dir()) end,
  status = function() return core.embed_status(M.embedded_dir()) end,
}

return M
