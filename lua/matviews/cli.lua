-- The matviews command line. Each command lives in lua/matviews/commands/
-- as a module { name, summary, configure(cmd), run(args, ctx) -> exit code }.
-- Exit codes: 0 ok, 1 an operation failed, 2 usage error, 3 aborted.
local argparse = require "argparse"

local M = {}

-- Command modules, in the order `help` lists them.
M.commands = {
  "init", "apply", "plan", "history", "rollback", "prune", "migrate",
  "create", "refresh", "delete",
  "list", "runs", "stats", "report", "metrics", "validate", "deps", "schedule",
  "enqueue", "queue", "worker", "scheduler", "reconcile",
  "db", "run", "repl", "version", "completion",
}

-- Builds the argparse parser with every command module configured.
function M.parser(mods)
  local p = argparse("matviews", "PostgreSQL materialized views, managed from Lua.")
    :command_target("command")
    :help_max_width(100)
  p:option("--dsn", "Connection string or URL (else DATABASE_URL, PG* variables, embedded).")
  p:option("--config", "Configuration file (default: matviews.lua found upwards).")
  p:flag("--json", "Print one JSON document on stdout.")
  p:flag("--yes", "Do not ask before destructive commands.")
  p:flag("--verbose", "Say more about what is done.")
  p:flag("--version", "Print the version and exit.")
  for _, mod in ipairs(mods) do
    local cmd = p:command(mod.name, mod.summary)
    if mod.configure then mod.configure(cmd) end
  end
  local help = p:command("help", "Show help for matviews or a command.")
  help:argument("topic", "A command."):args("?")
  p:require_command(false)
  return p
end

-- Loads every command module (names: only those, when given).
function M.load(names)
  local mods, by_name = {}, {}
  for _, name in ipairs(names or M.commands) do
    local mod = require("matviews.commands." .. name)
    mods[#mods + 1] = mod
    by_name[mod.name] = mod
  end
  return mods, by_name
end

local function usage_error(parser, msg)
  io.stderr:write(parser:get_usage(), "\n\nError: ", msg, "\n")
  return 2
end

-- The argparse parser of the command named name (the main parser if none).
local function command_parser(parser, name)
  for _, c in ipairs(parser._commands) do if c._name == name then return c end end
  return parser
end

-- Whether name is a command's name (M.commands).
local function is_command(name)
  for _, c in ipairs(M.commands) do if c == name then return true end end
  return false
end

-- Parses args with parser; returns the parsed table, or nil and the error
-- message with the (sub)parser that raised it.
local function parse(parser, args)
  local perr, perr_parser
  local ok, parsed = pcall(parser._parse, parser, args, function(p, msg)
    perr, perr_parser = msg, p
    error(msg, 0)
  end)
  if ok then return parsed end
  if perr then return nil, perr, perr_parser end
  error(parsed, 0)
end

-- A command line that names a command (but completion, which lists them
-- all) is parsed by a parser that knows only that command, its module the
-- only one loaded: loading the 28 modules and building their parser was
-- most of the fixed cost of a short run. Returns the parsed table, the
-- command's module, and a parser; nil when the line must go the whole way
-- (no command, help, a usage error: the message and the usage then read
-- as the full parser words them).
local function parse_lean(args)
  local name = args and args[1]
  if type(name) ~= "string" or name == "completion" or not is_command(name) then return nil end
  local mods, by_name = M.load({ name })
  local parser = M.parser(mods)
  local parsed = parse(parser, args)
  if not parsed then return nil end
  return parsed, by_name[parsed.command], parser
end

-- Entry point from matviews.main: the arguments left once the global
-- options were taken (or nil and why they could not be). Returns the code.
function M.main(args, err)
  local mv = require "matviews"
  local lean, lean_mod, lean_parser = parse_lean(args)
  if lean then return M.run(lean, lean_mod, lean_parser, mv) end
  local mods, by_name = M.load()
  local parser = M.parser(mods)
  if not args then return usage_error(parser, err) end
  if args[1] == "--version" or args[1] == "-v" then
    io.write("matviews ", mv.version, "\n"); return 0
  end
  if #args == 0 then
    io.stderr:write(parser:get_help(), "\n"); return 2
  end
  -- an argument that is no command but an existing file runs as a script
  local first = args[1]
  if not first:match("^%-") and not by_name[first] and first ~= "help" then
    if require("matviews.files").exists(first) then
      return by_name.run.run({ script = first, args = { table.unpack(args, 2) } }, { mv = mv })
    end
  end
  local parsed, perr, perr_parser = parse(parser, args)
  if not parsed then return usage_error(perr_parser, perr) end
  if parsed.command == "help" then
    local t = parsed.topic
    if t and not by_name[t] then return usage_error(parser, "unknown command '" .. t .. "'") end
    io.write((t and command_parser(parser, t) or parser):get_help(), "\n")
    return 0
  end
  return M.run(parsed, by_name[parsed.command], parser, mv)
end

-- Runs the command module mod with the parsed arguments (parser: the one
-- that parsed them). Returns the exit code.
function M.run(parsed, mod, parser, mv)
  local options = mv.options
  local ctx = { mv = mv, options = options, parser = parser }
  -- a command that always asks (prune, apply --prune) refuses before it
  -- connects when there is no terminal to ask on and no --yes /
  -- MATVIEWS_YES=1; create/refresh/delete refuse at their prompt, after
  -- their names resolved (a usage error wins) and before any job runs
  local prompt = require "matviews.prompt"
  if mod.confirms and mod.confirms(parsed) and prompt.must_refuse(ctx) then
    io.stderr:write(prompt.REFUSED, "\n")
    return prompt.ABORTED
  end
  local rok, code = xpcall(mod.run, function(e)
    if type(e) == "table" then return e end
    if options.verbose then return debug.traceback(e, 2) end
    return e
  end, parsed, ctx)
  if not rok then
    -- an error table may carry its exit code (2: a usage error, shown
    -- with the command's usage as argparse shows its own)
    local exit = type(code) == "table" and math.type(code.exit) == "integer" and code.exit or 1
    if exit == 2 then return usage_error(command_parser(parser, parsed.command), tostring(code.message)) end
    io.stderr:write("matviews: ", tostring(code), "\n")
    return exit
  end
  return code or 0
end

return M
