-- `matviews run SCRIPT.lua [args]`: runs a script with `mv`, as the host
-- runs `matviews SCRIPT.lua`: global `arg`, `...` the script's arguments.
local M = {
  name = "run",
  summary = "Run a Lua script with mv.",
}

function M.configure(cmd)
  cmd:argument("script", "A Lua file.")
  cmd:argument("args", "Arguments for the script."):args("*")
end

function M.run(args, ctx)
  local fn, err = loadfile(args.script)
  if not fn then error(err, 0) end
  local a = { [0] = args.script, table.unpack(args.args or {}) }
  _G.arg = a
  _G.mv = ctx.mv
  fn(table.unpack(args.args or {}))
  return 0
end

return M
