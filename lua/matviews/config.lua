-- The project configuration: matviews.lua at the project root (found by
-- walking up from the working directory) or the file given with --config.
-- The file is a Lua chunk run in its own environment; it sets keys as
-- globals (job_adapter = "queue") or returns a table. Everything has a
-- default, so no configuration file is needed.
local M = {}

-- Raises a matviews error table (message [, sqlstate]).
local function raise(e) require("matviews.core").error(e) end

-- The defaults; the keys a configuration may set.
M.defaults = {
  dsn = nil,                      -- connection string (else DATABASE_URL, PG*, embedded)
  definitions = "definitions",    -- directory of definition files, relative to the project
  migrations = "migrations",      -- directory of scripted migrations
  schema = nil,                   -- schema of definitions that name none (else current_schema())
  job_adapter = "inline",         -- "inline" or "queue"
  lock_timeout_ms = 5000,         -- bound of the swap transaction's locks
  statement_timeout_ms = nil,     -- nil: the server's (role's, database's); 0: no limit
  lock_wait_ms = 30000,           -- how long a job waits for another on the same view
  record_timeout_ms = 10000,      -- how long writing a run row waits for locks on the run tables
  begin_ahead_ms = 50,            -- how long a batch's next run may be begun before it starts (0: never)
  connect_wait_ms = 30000,        -- how long a connection refused for lack of slots is tried again
  retry = { attempts = 3, base_ms = 200, max_ms = 5000 },
  retention = { keep_last = 500, keep_days = nil, keep_failures = true },
  time_zone = "UTC",              -- schedules are read in this zone
  row_count = "estimated",        -- default row count strategy
  -- instructions a definition file or a retention function may run (0: no
  -- bound); a few ms of work is well under it, `while true do end` is not
  user_code_budget = 100000000,
  analyze = true,                 -- ANALYZE a view after create and refresh
  on_overlap = "wait",            -- when another run of the view is in progress: wait, skip or queue
  change_trigger = "auto",        -- change tracking's trigger: C when the server has it, or "plpgsql"
}

local loaded -- cache: { path = ..., config = ... }
local found -- cache of M.find: { path = ... }

-- Finds the configuration file: --config, else matviews.lua upwards; nil if none.
-- The search is done once (every job asks): the host never changes its
-- working directory (only a child it forks does, before exec).
function M.find()
  local mv = require "matviews"
  if mv.options.config then return mv.options.config end
  if found then return found.path end
  local f = mv.project_dir() .. "/matviews.lua"
  found = { path = require("matviews.files").exists(f) and f or nil }
  return found.path
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

-- What each key accepts: a checker returning nil when the value is right,
-- else what it must be. Every key of M.defaults is here (dsn too, whose
-- default is nil).
local function one_of(...)
  local set, names = {}, {}
  for _, v in ipairs({ ... }) do set[v] = true; names[#names + 1] = '"' .. v .. '"' end
  local want = "one of " .. table.concat(names, ", ")
  return function(v) if not set[v] then return want end end
end
local function kind(t)
  return function(v) if type(v) ~= t then return "a " .. t end end
end
local function count(v)
  if math.type(v) ~= "integer" or v < 0 then return "a non-negative integer" end
end
local function retry(v)
  if type(v) ~= "table" then return "a table { attempts, base_ms, max_ms }" end
  for k, x in pairs(v) do
    if k ~= "attempts" and k ~= "base_ms" and k ~= "max_ms" then
      return "a table { attempts, base_ms, max_ms } (unknown key '" .. tostring(k) .. "')"
    end
    if count(x) then return "a table of non-negative integers (" .. k .. ")" end
  end
end
M.types = {
  dsn = kind("string"),
  definitions = kind("string"),
  migrations = kind("string"),
  schema = function(v)
    if type(v) ~= "string" or not require("matviews.core").validate_name(v) then
      return "a schema name (a simple identifier of 1 to 63 bytes)"
    end
  end,
  job_adapter = one_of("inline", "queue"),
  lock_timeout_ms = count,
  statement_timeout_ms = count,
  lock_wait_ms = count,
  record_timeout_ms = count,
  begin_ahead_ms = count,
  connect_wait_ms = count,
  retry = retry,
  retention = function(v) return require("matviews.retention").check(v) end,
  time_zone = kind("string"),
  row_count = one_of(table.unpack(require("matviews.definitions").ROW_COUNT_LIST)),
  user_code_budget = count,
  analyze = kind("boolean"),
  on_overlap = one_of("wait", "skip", "queue"),
  change_trigger = one_of("auto", "plpgsql"),
}

-- Calls fn(...) as user code `what` (e.g. "definition file") under the
-- configured instruction budget (core.budget); returns fn's results.
function M.bounded(what, fn, ...)
  return require("matviews.core").budget.run(M.load().user_code_budget, what, fn, ...)
end

-- Levenshtein distance between two strings.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- The candidate closest to word (edit distance), or nil when none is close.
-- candidates: an array of strings or a set (keys).
function M.closest(word, candidates)
  local best, bestd
  local list = candidates[1] and candidates or {}
  if not candidates[1] then for k in pairs(candidates) do list[#list + 1] = k end end
  table.sort(list)
  for _, c in ipairs(list) do
    local d = distance(word, c)
    if not bestd or d < bestd then best, bestd = c, d end
  end
  if bestd and bestd <= math.max(2, #word // 3) then return best end
end

-- The line of source text where `key =` is written, searching from line
-- `from` (default 1); `from` itself when the key is not found.
function M.locate(text, key, from)
  from = from or 1
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n >= from and line:find("%f[%w_]" .. key .. "%s*=[^=]") then return n end
  end
  return from
end

-- The line of the last `return` statement of text (1 when there is none).
local function return_line(text)
  local n, at = 0, 1
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:match("^%s*return%f[^%w_]") then at = n end
  end
  return at
end

-- Checks the values a configuration file set. Returns an array of messages
-- ("path:line: key 'k' ..."), empty when everything is right.
function M.validate(values, path, words)
  local text, errs, keys = require("matviews.files").read(path) or "", {}, {}
  for k in pairs(values) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = values[k]
    local where = path .. ":" .. M.locate(text, tostring(k)) .. ": "
    if type(k) ~= "string" then
      errs[#errs + 1] = where .. "unexpected entry " .. tostring(k) .. " (keys are names)"
    elseif not M.types[k] then
      if not (words[k] and values[k] == words[k]) then
        local near = M.closest(k, M.types)
        errs[#errs + 1] = where .. "unknown key '" .. k .. "'" .. (near and (" (did you mean '" .. near .. "'?)") or "")
      end
    else
      local want = M.types[k](v)
      if want then
        errs[#errs + 1] = ("%skey '%s' must be %s, got %s"):format(where, k, want, type(v) == "string" and ("%q"):format(v) or type(v))
      end
    end
  end
  return errs
end

-- Loads (once) and returns the configuration table, defaults filled in.
-- Extension words available in the file are in M.words (e.g. workflow).
-- A syntax error, an unknown key or a value of the wrong kind raises
-- { message = "path:line: ..." } (every problem, one per line).
function M.load(path)
  path = path or M.find()
  if loaded and loaded.path == path then return loaded.config end
  local cfg = copy(M.defaults)
  cfg.workflows, cfg.hooks = {}, { on_success = {}, on_failure = {} }
  if path then
    cfg.path_shown = path
    local env, words = setmetatable({}, { __index = _G }), {}
    for word, make in pairs(M.words) do words[word] = make(cfg); env[word] = words[word] end
    local chunk, err = loadfile(path, "t", env)
    if not chunk then raise({ message = err }) end
    -- user code from a file: under the default instruction budget (the
    -- file may set another only for what runs after it)
    local ok, ret = pcall(require("matviews.core").budget.run, M.defaults.user_code_budget, "configuration file", chunk)
    if not ok then raise(type(ret) == "table" and ret or { message = tostring(ret) }) end
    if ret ~= nil and type(ret) ~= "table" then
      raise({ message = ("%s:%d: the configuration returns a %s: set keys (job_adapter = \"queue\") or return a table")
        :format(path, return_line(require("matviews.files").read(path) or ""), type(ret)) })
    end
    local values = type(ret) == "table" and ret or env
    local errs = M.validate(values, path, type(ret) == "table" and {} or words)
    if #errs > 0 then raise({ message = table.concat(errs, "\n"), errors = errs }) end
    for k in pairs(M.types) do
      if rawget(values, k) ~= nil then cfg[k] = rawget(values, k) end
    end
    cfg.path = path
  end
  loaded = { path = path, config = cfg }
  require("matviews.core").slot_wait(cfg.connect_wait_ms) -- connections opened from now on
  return cfg
end

-- The directory of definition files: `override` (--definitions, relative to
-- the working directory) or the configured one (relative to the project).
function M.definitions_dir(override)
  if override then return override end
  local cfg = M.load()
  local dir = cfg.definitions
  if dir:sub(1, 1) == "/" then return dir end
  local base = cfg.path and cfg.path:match("^(.*)/[^/]*$") or require("matviews").project_dir()
  return base .. "/" .. dir
end

-- Words a configuration file may call; each gets the config being built.
M.words = {
  -- strategy "name" (function(ctx) ... end): see matviews.strategies
  strategy = function(cfg)
    return function(name)
      local line = debug.getinfo(2, "l").currentline
      return function(fn) require("matviews.strategies").define(name, fn, cfg.path_shown or "matviews.lua", line) end
    end
  end,
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
function M.reset() loaded, found = nil, nil end

return M
