-- The project configuration: matviews.lua at the project root (found by
-- walking up from the working directory) or the file given with --config.
-- The file is a Lua chunk run in its own environment; it sets keys as
-- globals (job_adapter = "queue") or returns a table. Everything has a
-- default, so no configuration file is needed.
local M = {}

-- The defaults; the keys a configuration may set.
M.defaults = {
  dsn = nil,                      -- connection string (else DATABASE_URL, PG*, embedded)
  definitions = "definitions",    -- directory of definition files, relative to the project
  migrations = "migrations",      -- directory of scripted migrations
  job_adapter = "inline",         -- "inline" or "queue"
  lock_timeout_ms = 5000,         -- bound of the swap transaction's locks
  statement_timeout_ms = 0,       -- 0: no limit
  lock_wait_ms = 30000,           -- how long a job waits for another on the same view
  retry = { attempts = 3, base_ms = 200, max_ms = 5000 },
  retention = { keep_last = 500, keep_days = nil, keep_failures = true },
  time_zone = "UTC",              -- schedules are read in this zone
  row_count = "estimated",        -- default row count strategy
}

local loaded -- cache: { path = ..., config = ... }

-- Finds the configuration file: --config, else matviews.lua upwards; nil if none.
function M.find()
  local mv = require "matviews"
  if mv.options.config then return mv.options.config end
  local f = mv.project_dir() .. "/matviews.lua"
  local h = io.open(f, "r")
  if h then h:close(); return f end
  return nil
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

-- Loads (once) and returns the configuration table, defaults filled in.
-- Extension words available in the file are in M.words (e.g. workflow).
function M.load(path)
  path = path or M.find()
  if loaded and loaded.path == path then return loaded.config end
  local cfg = copy(M.defaults)
  cfg.workflows, cfg.hooks = {}, { on_success = {}, on_failure = {} }
  if path then
    local env = setmetatable({}, { __index = _G })
    for word, make in pairs(M.words) do env[word] = make(cfg) end
    local chunk, err = loadfile(path, "t", env)
    if not chunk then error({ message = err }, 0) end
    local ok, ret = pcall(chunk)
    if not ok then error(type(ret) == "table" and ret or { message = tostring(ret) }, 0) end
    local values = type(ret) == "table" and ret or env
    for k in pairs(M.defaults) do
      if rawget(values, k) ~= nil then cfg[k] = rawget(values, k) end
    end
    cfg.path = path
  end
  loaded = { path = path, config = cfg }
  return cfg
end

-- Words a configuration file may call; each gets the config being built.
M.words = {
  -- workflow "name" (function(mv, args) ... end)
  workflow = function(cfg)
    return function(name)
      return function(fn) cfg.workflows[name] = fn end
    end
  end,
  -- on_success(fn [, view]) / on_failure(fn [, view])
  on_success = function(cfg)
    return function(fn, view) table.insert(cfg.hooks.on_success, { fn = fn, view = view }) end
  end,
  on_failure = function(cfg)
    return function(fn, view) table.insert(cfg.hooks.on_failure, { fn = fn, view = view }) end
  end,
}

-- Forgets the cached configuration (specs, REPL reloads).
function M.reset() loaded = nil end

return M
