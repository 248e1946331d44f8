-- Hooks called after a job's run is finalised: on_success(fn [, view]) and
-- on_failure(fn [, view]), registered from Lua (mv.hooks) or with the words
-- of the configuration file (config.hooks). fn(run) gets the finalised run
-- table; view, when given, limits the hook to that definition (its name or
-- "schema.rel"). A hook that raises is reported on stderr; the run keeps its
-- status and the other hooks still run.
local M = {}

local registered = { success = {}, failure = {} }

local function add(list, fn, view)
  if type(fn) ~= "function" then
    require("matviews").error("a hook must be a function, got " .. type(fn))
  end
  if view ~= nil and type(view) ~= "string" then
    require("matviews").error("a hook's view must be a view name, got " .. type(view))
  end
  list[#list + 1] = { fn = fn, view = view }
end

-- Registers fn(run), called after each successful run (of view, if given).
function M.on_success(fn, view) add(registered.success, fn, view) end

-- Registers fn(run), called after each failed run (of view, if given).
function M.on_failure(fn, view) add(registered.failure, fn, view) end

-- Forgets the hooks registered from Lua (not those of the configuration).
function M.clear() registered = { success = {}, failure = {} } end

-- Whether any hook is registered or configured (a batch's finish then
-- waits for its row, which the hooks may read).
function M.any()
  if #registered.success > 0 or #registered.failure > 0 then return true end
  local cfg = require("matviews").config().hooks or {}
  return next(cfg.on_success or {}) ~= nil or next(cfg.on_failure or {}) ~= nil
end

local function applies(hook, run)
  if hook.view == nil then return true end
  local meta_view = type(run.meta) == "table" and run.meta.view or nil
  return hook.view == run.view or hook.view == meta_view
end

local message = require("matviews.core").error_message -- the text of a caught error

-- Calls the hooks that apply to run (after its row is finalised). Returns
-- the number of hooks that failed.
function M.fire(run)
  local kind = run.status == "success" and "success" or "failure"
  local cfg = require("matviews").config().hooks or {}
  local configured = cfg["on_" .. kind] or {}
  if #registered[kind] == 0 and next(configured) == nil then return 0 end
  local failed = 0
  local config = require "matviews.config"
  for i, list in ipairs({ registered[kind], configured }) do
    for _, hook in ipairs(list) do
      if applies(hook, run) then
        -- a hook of the configuration file is user code from a file: under
        -- the instruction budget (one registered by a script is the script's)
        local ok, err
        if i == 2 then ok, err = pcall(config.bounded, "on_" .. kind .. " hook", hook.fn, run)
        else ok, err = pcall(hook.fn, run) end
        if not ok then
          failed = failed + 1
          io.stderr:write(("matviews: on_%s hook failed for %s (run %s): %s\n")
            :format(kind, tostring(run.view), tostring(run.id), message(err)))
        end
      end
    end
  end
  return failed
end

return M
