-- `matviews run SCRIPT.lua [args]`: runs a script with `mv` exactly as the
-- host runs `matviews SCRIPT.lua` (matviews.main.script): global `arg`,
-- `...` the script's arguments, an error reported as file:line: message
-- with a traceback.
-- `matviews run NAME [args]`: runs the workflow NAME declared in matviews.lua
-- (`workflow "nightly" (function(mv, args) ... end)`) with args, the array of
-- its arguments; it exits with the integer it returns (1 for false, else 0).
-- A name with a `/` or ending in .lua is always a file; another name is a
-- workflow, else a file of that name. Unknown workflow (and no such file):
-- exit 2, as a usage error; a missing script file: exit 1, as the host.
local M = {
  name = "run",
  summary = "Run a Lua script with mv, or a workflow declared in matviews.lua.",
}

function M.configure(cmd)
  cmd:argument("script", "A Lua file, or the name of a workflow.")
  cmd:argument("args", "Arguments for the script or workflow."):args("*")
end

-- The exit code for what a workflow returned.
local function exit_code(ret)
  if math.type(ret) == "integer" then return ret end
  if ret == false then return 1 end
  return 0
end

-- Runs the workflow named name, or returns nil when there is none.
local function run_workflow(name, args, ctx)
  local workflows = ctx.mv.config().workflows or {}
  local fn = workflows[name]
  if fn == nil then return nil end
  _G.mv = ctx.mv
  return exit_code(fn(ctx.mv, args))
end

-- Names of the declared workflows, sorted, for the error message.
local function declared(ctx)
  local names = {}
  for k in pairs(ctx.mv.config().workflows or {}) do names[#names + 1] = k end
  table.sort(names)
  return #names > 0 and table.concat(names, ", ") or "none"
end

function M.run(args, ctx)
  local target, rest = args.script, args.args or {}
  if not target:find("/", 1, true) and not target:match("%.lua$") then
    local code = run_workflow(target, rest, ctx)
    if code then return code end
    if not require("matviews.files").exists(target) then
      require("matviews.targets").usage(("unknown workflow '%s' (declared: %s)"):format(target, declared(ctx)))
    end
  end
  return require("matviews.main").script(target, rest)
end

return M
