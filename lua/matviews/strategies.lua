-- Refresh strategies: the one table every recorded refresh goes through.
-- `strategy "name" (function(ctx) ... end)` in matviews.lua or a definition
-- file registers one; a view uses it with `strategy = "name"`. The three
-- built-in strategies are registered here the same way, so that one can be
-- read and wrapped. A strategy composes the context's host primitives:
--
--   ctx.view        the view, schema-qualified and quoted
--   ctx.definition  the definition (as mv.definitions reads it)
--   ctx.args        the job's args (`refresh --arg k=v`, or opts.args)
--   ctx.previous    the last successful refresh run { rows_count,
--                   duration_ms, finished_at }, or nil
--   ctx:refresh{ concurrently = bool }   the plain or concurrent REFRESH
--   ctx:build{ indexes = true }   builds the definition's SQL into the
--                   build relation a swap uses, with the view's indexes
--                   (always: publish keeps them); returns its quoted name
--   ctx:publish()   audits the build (the definition's `audit`), then puts
--                   it in place exactly as swap_refresh does
--   ctx:strategy(name)   runs another strategy (e.g. the built-in "swap")
--                   on this context: how a strategy wraps one
--   ctx:query(sql, ...), ctx:exec(sql, ...)   on the job's connection
--   ctx:fail(message, details)   stops the refresh (the error names the
--                   call's file and line; details go to meta.error.details)
--
-- Each service step raises when it fails, so a strategy reads top-down.
-- The job records the run: meta.strategy, meta.result (what the function
-- returned), meta.audit; a build that was not published is dropped.
local M = {}

local registry = {}

local function mv() return require "matviews" end

-- Raises a matviews error table.
local function raise(e) require("matviews.core").error(e) end

-- Registers strategy name (fn(ctx)) declared at file:line; two
-- declarations of one name are an error naming both places. project: a
-- definition file declares it (declared again when the files change).
function M.define(name, fn, file, line, builtin, project)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    raise(("%s:%d: a strategy name is a word (letters, digits, _), got %s"):format(file, line, tostring(name)))
  end
  if type(fn) ~= "function" then
    raise(("%s:%d: strategy \"%s\" needs a function (strategy \"%s\" (function(ctx) ... end))"):format(file, line, name, name))
  end
  local old = registry[name]
  if old and not (old.file == file and old.line == line) then
    raise(("strategy \"%s\" is defined twice: %s:%d and %s:%d"):format(name, old.file, old.line, file, line))
  end
  registry[name] = { name = name, fn = fn, file = file, line = line, builtin = builtin or false,
    project = project or false }
end

-- The strategy named name, or nil.
function M.get(name) return registry[name] end

-- The names registered, sorted.
function M.names()
  local out = {}
  for n in pairs(registry) do out[#out + 1] = n end
  table.sort(out)
  return out
end

local loaded_project, project_defs, project_text = false, {}, nil

-- The definition files' names and contents as one string; nil when the
-- directory cannot be read.
local function project_text_now()
  local ok, text = pcall(function()
    local dir, parts = require("matviews.config").definitions_dir(), {}
    for _, n in ipairs(require("matviews.dsl").files(dir)) do
      parts[#parts + 1] = n .. "\n" .. (require("matviews.files").read(dir .. "/" .. n) or "")
    end
    return table.concat(parts, "\0")
  end)
  return ok and text or nil
end

-- Registers the strategies the project declares (its definition files;
-- matviews.lua registers its own when the configuration loads), and keeps
-- the views the files declare (those that loaded, when some files have
-- errors) to say where a view names its strategy.
function M.load_project()
  if loaded_project then return end
  loaded_project = true
  mv().config()
  project_text = project_text_now()
  local ok, dsl = pcall(require, "matviews.dsl")
  if not ok then return end
  local lok, defs, _, loaded = pcall(dsl.load_dir)
  if lok then project_defs = defs or loaded or {} end
end

-- The strategy named name, or nil when no file declares it. The project's
-- files are loaded the first time a name is not known, and again when they
-- changed since: a long-running worker or scheduler sees a strategy
-- declared after it started.
local function lookup(name)
  local s = registry[name]
  if s then return s end
  if loaded_project and project_text_now() ~= project_text then
    for n, r in pairs(registry) do if r.project then registry[n] = nil end end
    loaded_project, project_defs = false, {}
  end
  M.load_project()
  return registry[name]
end

-- The declaration of catalog definition d ({ schema_name, name }) in the
-- project's definition files, or nil.
local function declared_view(d)
  M.load_project()
  for _, def in ipairs(project_defs) do
    if def.name == d.name and (def.schema == nil or def.schema == d.schema_name) then return def end
  end
  return nil
end

-- The strategy of catalog definition d (mv.definitions tables, or rows
-- with schema_name, name, label and the strategy's name): the strategy, or
-- nil and why not, naming the file and line where the view names it.
function M.check(d, name)
  name = name or (type(d.options) == "table" and d.options.strategy) or d.refresh_strategy
  local s = lookup(name)
  if s then return s end
  local label, def = d.label or d.name, declared_view(d)
  local known = table.concat(M.names(), ", ")
  if not def then
    return nil, ("view '%s': unknown strategy \"%s\" (no definition file declares the view, the catalog names "
      .. "the strategy; declared: %s)"):format(label, tostring(name), known)
  end
  local at = ("%s:%d"):format(def.file, def.strategy_line or def.line)
  if def.strategy ~= name then
    return nil, ("%s: view '%s': unknown strategy \"%s\" in the catalog, the file says \"%s\": run apply "
      .. "(declared: %s)"):format(at, label, tostring(name), tostring(def.strategy), known)
  end
  return nil, ("%s: view '%s': unknown strategy \"%s\" (declared: %s)"):format(at, label, tostring(name), known)
end

-- M.check, raising.
function M.of_definition(d)
  local s, why = M.check(d)
  if not s then raise(why) end
  return s
end

-- The definitions of the catalog on conn whose strategy is unknown:
-- { [label] = message } (see M.check). Only declared (non built-in)
-- names are looked up.
function M.catalog_errors(conn)
  local out = {}
  local rows = conn:query([[SELECT schema_name, name, ]] .. require("matviews.definitions").label_sql("d")
    .. [[ AS label, options->>'strategy' AS strategy FROM mat_view_definitions d
    WHERE deleted_at IS NULL AND options ? 'strategy' ORDER BY name, schema_name]])
  for _, r in ipairs(rows) do
    local s, why = M.check(r, r.strategy)
    if not s then out[r.label] = why end
  end
  return out
end

-- Writes the messages of errs ({ [label] = message }) for the labels in
-- rows (rows[i][key]; all when rows is nil) on stderr, sorted; returns
-- how many.
function M.report_errors(errs, rows, key)
  local shown = {}
  if rows then
    for _, r in ipairs(rows) do if errs[r[key]] then shown[#shown + 1] = errs[r[key]] end end
  else
    for _, m in pairs(errs) do shown[#shown + 1] = m end
  end
  table.sort(shown)
  for _, m in ipairs(shown) do io.stderr:write("matviews: ", m, "\n") end
  return #shown
end

-- The error a failed service step raises: its response kept for the run.
local function step_failed(resp)
  local e = type(resp.error) == "table" and resp.error or {}
  require("matviews.core").error({ message = tostring(e.message or "the service failed"), sqlstate = e.sqlstate,
    response = resp })
end

-- ctx.previous: the view's latest successful refresh.
local PREVIOUS_SQL = require("matviews.vocab").sql[[SELECT rows_count, duration_ms, finished_at::text AS finished_at
  FROM {refresh_runs} WHERE mat_view_definition_id = $1 AND status = {success} ORDER BY id DESC LIMIT 1]]

local Ctx = {}
Ctx.__index = function(ctx, k)
  if k == "previous" then
    local r = ctx:query(PREVIOUS_SQL, ctx.definition.id)[1]
    rawset(ctx, "previous", r or false)
    return r
  end
  return Ctx[k]
end

-- A context for one attempt of job (its definition, service options and args).
function M.context(job)
  local conn = job.options.conn
  local d = job.defn
  local view = conn:quote_ident(d.schema_name or "public") .. "." .. conn:quote_ident(d.name)
  return setmetatable({ view = view, definition = d, args = job.args or {}, _job = job, audit = nil }, Ctx)
end

function Ctx:refresh(o)
  local concurrently = o and o.concurrently
  local job, resp = self._job, nil
  if job.overlap and not concurrently and job.strategy_def and job.strategy_def.builtin then
    -- the batch's work that waits for a REFRESH (the view before this one
    -- finished and printed: jobs.start_held) is done while the server
    -- refreshes this one (not inside a user strategy: its instruction
    -- budget is its own)
    local sent <close> = mv().services.regular_refresh_send(self.definition, job.options)
    job.overlap()
    resp = sent:collect()
  else
    resp = mv().services[concurrently and "concurrent_refresh" or "regular_refresh"](self.definition, job.options)
  end
  self.response = resp
  if not resp.success then step_failed(resp) end
  return resp
end

function Ctx:build(o)
  if type(o) == "table" and o.indexes == false then
    raise("build: indexes = false is not offered: publish keeps every index of the view, so the build has them")
  end
  if self._build then raise("build: the view is already built in this refresh (build once, then publish)") end
  -- the options swap_refresh would get (analyze as the definition or configuration says)
  local b, q = mv().core.services.swap_build(mv().service_options("swap_refresh", self.definition, self._job.options))
  if not b then self.response = q; step_failed(q) end
  self._build, self.new = b, q
  return q
end

function Ctx:publish()
  if not self._build then raise("publish: nothing built to publish (call ctx:build() first)") end
  if self._published then raise("publish: the build is already published (publish once)") end
  require("matviews.audit").gate(self)
  self._published = true
  local resp = self._build:publish()
  self.response = resp
  if not resp.success then step_failed(resp) end
  return resp
end

-- Runs the strategy named name (a built-in one or any declared) on this
-- context and returns what it returns: how one strategy wraps another,
-- e.g. ctx:strategy("swap") then VACUUM ANALYZE.
function Ctx:strategy(name)
  local s = lookup(name)
  if s == nil then
    raise(("strategy: unknown strategy \"%s\" (declared: %s)"):format(tostring(name), table.concat(M.names(), ", ")))
  end
  return s.fn(self)
end

function Ctx:query(sql, ...) return self._job.options.conn:query(sql, ...) end
function Ctx:exec(sql, ...) return self._job.options.conn:exec(sql, ...) end

-- The error names the file and line of the call; details (a table) go to
-- the run's meta.error.details.
function Ctx:fail(message, details)
  local at = debug.getinfo(2, "Sl")
  local where = at and at.currentline and at.currentline > 0 and (at.short_src .. ":" .. at.currentline .. ": ") or ""
  require("matviews.core").error({ message = where .. tostring(message), details = details, failed = true })
end

-- Drops a build that was not published (any exit of the strategy).
function Ctx:close()
  if self._build and not self._published then self._build:drop() end
end

-- The built-in strategies, registered like any other (they return the
-- service's response, which the job records as it always has).
local here = "lua/matviews/strategies.lua"
M.define("regular", function(ctx) return ctx:refresh() end, here, debug.getinfo(1, "l").currentline, true)
M.define("concurrent", function(ctx) return ctx:refresh{ concurrently = true } end, here,
  debug.getinfo(1, "l").currentline, true)
M.define("swap", function(ctx)
  ctx:build()
  return ctx:publish()
end, here, debug.getinfo(1, "l").currentline, true)

return M
