-- `matviews plan [--prune] [--cascade] [--definitions DIR]`: changes
-- nothing; prints what `apply` would do, one line per action, in the order
-- apply runs them (matviews.actions), after rehearsing every definition in
-- a transaction that is rolled back. Exit 0 in sync, 1 drift, 2 invalid
-- definitions (each error names its file and line).
local output = require "matviews.output"

local M = {
  name = "plan",
  summary = "Show what apply would do (exit 0 in sync, 1 drift, 2 invalid definitions).",
}

function M.configure(cmd)
  cmd:flag("--prune", "Preview apply --prune: drops of views whose files are gone, undeclared indexes.")
  cmd:flag("--cascade", "Preview apply --prune --cascade.")
  cmd:option("--definitions", "Directory of definition files (default: from matviews.lua, else definitions/).")
end

-- The JSON form of a plan (the rehearsal's internals left out).
function M.document(p)
  local acts = output.array()
  for _, a in ipairs(p.actions) do
    acts[#acts + 1] = { action = a.action, view = a.view, detail = a.detail, file = a.file, sql = a.sql,
      line = a.line, status = a.status, run_id = a.run_id, error = a.error, duration_ms = a.duration_ms }
  end
  return { in_sync = p.in_sync, valid = p.valid, ok = p.ok, actions = acts, notes = p.notes, errors = p.errors }
end

-- Prints invalid definitions' errors (stderr, or the JSON document); returns 2.
function M.report_errors(ctx, p, what)
  if ctx.options.json then output.json(M.document(p)) return 2 end
  for _, e in ipairs(p.errors) do io.stderr:write(e, "\n") end
  io.stderr:write(("%d error%s in definitions; %s\n"):format(#p.errors, #p.errors == 1 and "" or "s", what))
  return 2
end

-- Prints the action lines and notes of p.
function M.print_actions(p)
  for _, a in ipairs(p.actions) do print(a.line) end
  for _, n in ipairs(p.notes) do print("note: " .. n) end
end

function M.run(args, ctx)
  local p = require("matviews.actions").plan({ prune = args.prune, cascade = args.cascade,
    definitions = require("matviews.config").definitions_dir(args.definitions) })
  if not p.valid then return M.report_errors(ctx, p, "nothing would be applied") end
  output.emit(ctx, M.document(p), function()
    M.print_actions(p)
    print(p.in_sync and "in sync" or ("drift: %d action%s"):format(#p.actions, #p.actions == 1 and "" or "s"))
  end)
  return p.in_sync and 0 or 1
end

return M
