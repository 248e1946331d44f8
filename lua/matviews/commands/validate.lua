-- `matviews validate [NAME...] [--iterations N] [--warmup N] [--csv FILE]`:
-- times each definition's SQL against a full read of its view and checks
-- that both hold the same rows (see matviews.validate). Exit 1 on any
-- mismatch or on a named definition that has no view; a name without a
-- definition is a usage error (exit 2, before anything runs).
local M = {
  name = "validate",
  summary = "Time views against their SQL and check that their contents match.",
}

-- argparse converter: a whole number >= min, or nil and a message.
local function count(min)
  return function(s)
    local n = math.tointeger(tonumber(s))
    if not n or n < min then return nil, ("expected a whole number >= %d, got '%s'"):format(min, s) end
    return n
  end
end

function M.configure(cmd)
  cmd:argument("names", "Definitions to validate (default: every one whose view exists)."):args("*")
  cmd:option("--iterations", "Timed runs of each side.", "5"):convert(count(1))
  cmd:option("--warmup", "Untimed runs of each side first.", "1"):convert(count(0))
  cmd:option("--csv", "Also write the results as CSV to FILE.")
end

-- Writes text to path; raises a matviews error naming the file on failure.
local function write_file(mv, path, text)
  local f, err = io.open(path, "wb")
  if not f then error(mv.error({ message = "cannot write " .. err }), 0) end
  f:write(text)
  f:close()
end

function M.run(args, ctx)
  local mv = ctx.mv
  local validate = require "matviews.validate"
  for _, n in ipairs(args.names or {}) do
    local ok, why = mv.core.validate_name(n)
    if not ok then require("matviews.targets").usage(why) end
    if not mv.definitions.get(n) then require("matviews.targets").usage("no definition named " .. n) end
  end
  local out = validate.run({ names = args.names, iterations = args.iterations, warmup = args.warmup })
  if args.csv then write_file(mv, args.csv, validate.csv(out.results)) end
  local explicit = args.names and #args.names > 0
  for _, n in ipairs(out.missing) do io.stderr:write("matviews: no definition named ", n, "\n") end
  for _, s in ipairs(out.skipped) do io.stderr:write("skipped ", s.name, ": ", s.reason, "\n") end
  require("matviews.output").emit(ctx, out, function(d)
    if #d.results == 0 then print("no views to validate") return end
    io.write(validate.render(d.results))
  end)
  if out.mismatches > 0 or #out.missing > 0 or (explicit and #out.skipped > 0) then return 1 end
  return 0
end

return M
