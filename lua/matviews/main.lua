-- The host's one entry point (src/main.c calls M.main with its arguments):
-- the global options are parsed here, once, for every mode; then the rest
-- runs as the lua interpreter would (a script, `-` for stdin, `-e CODE`)
-- or as a CLI command (matviews.cli). `matviews SCRIPT` and `matviews run
-- SCRIPT` run the script the same way (M.script): through the host's
-- docall, so an error reads "matviews: file:line: message" with a
-- traceback in both.
local M = {}

local GLOBAL_FLAGS = { ["--json"] = "json", ["--yes"] = "yes", ["--verbose"] = "verbose" }
local GLOBAL_VALUES = { ["--dsn"] = "dsn", ["--config"] = "config" }

-- Whether a first argument names a script rather than a command.
function M.is_script(a)
  return a == "-" or a:find("/", 1, true) ~= nil or a:match("%.lua$") ~= nil
end

-- Takes the global option at args[i] into options; returns the next index,
-- or nil when it is none, or false and a message when its value is missing.
local function take_global(args, i, options)
  local a = args[i]
  local key, val = a:match("^%-%-(%a+)=(.*)$")
  if GLOBAL_FLAGS[a] then options[GLOBAL_FLAGS[a]] = true; return i + 1 end
  if GLOBAL_VALUES[a] then
    if args[i + 1] == nil then return false, "option " .. a .. " needs a value" end
    options[GLOBAL_VALUES[a]] = args[i + 1]
    return i + 2
  end
  if key and GLOBAL_VALUES["--" .. key] then options[key] = val; return i + 1 end
  return nil
end

-- Pulls the global options out of args: before a script or `-e` only (what
-- follows belongs to it), wherever they stand around a command, except in
-- what follows `run SCRIPT` and `--`. Returns the remaining args, or nil
-- and a message.
function M.split_globals(args, options)
  local rest, i, cmd_seen = {}, 1, nil
  while i <= #args do
    local a = args[i]
    local nexti, err = take_global(args, i, options)
    if nexti == false then return nil, err end
    if nexti then
      i = nexti
    elseif a == "--" or (not cmd_seen and (a == "-e" or M.is_script(a))) then
      table.move(args, i, #args, #rest + 1, rest)
      return rest
    else
      rest[#rest + 1] = a
      if not cmd_seen and not a:match("^%-") then
        cmd_seen = a
        if a == "run" then
          -- global options may stand between run and its script; the rest is the script's
          local j = i + 1
          while args[j] do
            local nj, e = take_global(args, j, options)
            if nj == false then return nil, e end
            if not nj then break end
            j = nj
          end
          if args[j] then rest[#rest + 1] = args[j]; rest[#rest + 1] = "--"; j = j + 1 end
          table.move(args, j, #args, #rest + 1, rest)
          return rest
        end
      end
      i = i + 1
    end
  end
  return rest
end

-- Runs fn(...) as a user chunk with `mv` loaded: through the host's docall
-- (traceback handler, errors reported as the interpreter reports them).
-- Returns the exit code.
local function run_chunk(fn, ...)
  local host = require "matviews.host"
  if not host.docall(function() _G.mv = require "matviews" end) then return 1 end
  return host.docall(fn, ...) and 0 or 1
end

-- Runs the script at path ("-": stdin) with args as its `...` and `arg`
-- (arg[0] the script, arg[-n..-1] what came before it when given).
function M.script(path, args, before)
  local a = { [0] = path }
  for i, v in ipairs(before or {}) do a[i - #before - 1] = v end
  table.move(args, 1, #args, 1, a)
  _G.arg = a
  local fn, err = loadfile(path ~= "-" and path or nil)
  if not fn then require("matviews.host").report(err) return 1 end
  return run_chunk(fn, table.unpack(args))
end

-- `-e CODE [SCRIPT ARGS...]`: runs CODE, then the script if one follows.
local function eval(rest)
  local code = rest[2]
  if code == nil then require("matviews.host").report("'-e' needs an argument") return 2 end
  _G.arg = { [0] = "-e", table.unpack(rest, 3) }
  local fn, err = load(code, "=(command line)")
  if not fn then require("matviews.host").report(err) return 1 end
  local rc = run_chunk(fn)
  if rc ~= 0 or rest[3] == nil then return rc end
  return M.script(rest[3], { table.unpack(rest, 4) }, { "-e", code })
end

-- The entry point: argv without the program name; returns the exit code.
function M.main(argv)
  local options = {}
  package.loaded["matviews.options"] = options
  local rest, err = M.split_globals(argv, options)
  if rest and rest[1] == "-e" then return eval(rest) end
  if rest and rest[1] and rest[1] ~= "--" and M.is_script(rest[1]) then
    return M.script(rest[1], { table.unpack(rest, 2) })
  end
  return require("matviews.cli").main(rest, err)
end

return M
