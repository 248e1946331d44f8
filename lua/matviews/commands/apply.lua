-- `matviews apply [--prune [--cascade]] [--dry-run] [--catalog-only]
-- [--definitions DIR]`: converges the database to the definition files
-- (matviews.converge): saves the definitions, creates missing views,
-- replaces changed ones without blocking their readers, converges indexes,
-- grants and comments, and with --prune drops what no file declares.
-- Invalid definitions: exit 2, nothing applied. --dry-run prints the plan.
-- --catalog-only only syncs the catalog (and live indexes and grants), as
-- apply did before it converged the views.
local output = require "matviews.output"
local prompt = require "matviews.prompt"
local plan_cmd = require "matviews.commands.plan"

local M = {
  name = "apply",
  summary = "Converge the database to definitions/*.lua (create, replace, indexes, grants; --prune drops).",
}

function M.configure(cmd)
  cmd:flag("--prune", "Drop the views whose files are gone and undeclared indexes (asks first).")
  cmd:flag("--cascade", "With --prune: drop the views that read a dropped view too.")
  cmd:flag("--dry-run", "Print what would be done (the plan); change nothing.")
  cmd:flag("--catalog-only", "Only sync the catalog rows (and live indexes and grants), create or replace no view.")
  cmd:option("--definitions", "Directory of definition files (default: from matviews.lua, else definitions/).")
end

-- Prints the DSL errors of a catalog-only apply (stderr or JSON); returns 2.
function M.report_errors(ctx, errs)
  if ctx.options.json then output.json({ ok = false, errors = output.array(errs) }) return 2 end
  return plan_cmd.report_errors(ctx, { errors = errs, actions = {}, notes = {} }, "nothing applied")
end

-- The catalog-only apply (the behaviour before apply converged the views).
-- Which trigger function change tracking uses, when apply installed or
-- replaced a trigger: "change trigger: C (extension matviews_changes)" or
-- "change trigger: PL/pgSQL (why not C)".
local function print_trigger(t)
  if not t.trigger or #t.installed + #(t.switched or {}) == 0 then return end
  print("change trigger: " .. t.trigger.kind .. " (" .. (t.trigger.why or ("extension " .. require("matviews.changes").EXTENSION)) .. ")")
end

local function catalog_only(args, ctx)
  local mv = ctx.mv
  local dsl, apply = require "matviews.dsl", require "matviews.apply"
  local defs, errs = dsl.load_dir(require("matviews.config").definitions_dir(args.definitions))
  if not defs then return M.report_errors(ctx, errs) end
  if args.prune then
    mv.init()
    local gone = apply.orphans(mv.conn(), defs)
    if #gone > 0 and not prompt.confirm(ctx, ("apply --prune deletes %d definition%s whose files are gone: %s\n(the views themselves are not dropped)")
        :format(#gone, #gone == 1 and "" or "s", table.concat(gone, ", "))) then
      if not prompt.must_refuse(ctx) then io.stderr:write("aborted; nothing applied\n") end
      return prompt.ABORTED
    end
  end
  local r = apply.apply(defs, { prune = args.prune })
  output.emit(ctx, r, function(d)
    for _, v in ipairs(d.views) do
      local extra = v.action == "updated" and (" (" .. table.concat(v.fields, ", ") .. ")") or ""
      print(("%-9s  %s%s"):format(v.action, v.name, extra))
      for _, sql in ipairs(v.live.sql) do print("           " .. sql) end
    end
    for _, t in ipairs(d.tracking and d.tracking.installed or {}) do print("tracking  " .. t) end
    for _, t in ipairs(d.tracking and d.tracking.switched or {}) do print("tracking  " .. t .. " (trigger replaced)") end
    if d.tracking then print_trigger(d.tracking) end
    for _, w in ipairs(d.tracking and d.tracking.warnings or {}) do io.stderr:write("matviews: warning: ", w, "\n") end
    local c = d.counts
    print(("%d inserted, %d updated, %d unchanged, %d deleted"):format(c.inserted, c.updated, c.unchanged, c.deleted))
  end)
  return 0
end

-- The text of one done action: its line and outcome.
local function outcome(a)
  local s = a.line
  if a.status == "failed" then return s .. ": failed: " .. tostring(a.error) end
  if math.type(a.duration_ms) == "integer" then return s .. (": done in %d ms"):format(a.duration_ms) end
  return s .. ": done"
end

function M.run(args, ctx)
  if args.catalog_only then return catalog_only(args, ctx) end
  local converge = require "matviews.converge"
  local dir = require("matviews.config").definitions_dir(args.definitions)
  local opts = { definitions = dir, prune = args.prune, cascade = args.cascade }
  if args.prune and not args.dry_run then
    local p = require("matviews.actions").plan(opts)
    if not p.valid then return plan_cmd.report_errors(ctx, p, "nothing applied") end
    local drops = {}
    for _, a in ipairs(p.actions) do
      if a.action == "drop" or a.action == "index drop" then drops[#drops + 1] = a.line end
    end
    if #drops > 0 and not prompt.confirm(ctx, "apply --prune drops:\n  " .. table.concat(drops, "\n  ")
        .. "\n(the runs of dropped definitions are kept)") then
      if not prompt.must_refuse(ctx) then io.stderr:write("aborted; nothing applied\n") end
      return prompt.ABORTED
    end
  end
  opts.dry_run = args.dry_run
  local p = converge.apply(opts)
  if not p.valid then return plan_cmd.report_errors(ctx, p, "nothing applied") end
  for _, w in ipairs(p.tracking and p.tracking.warnings or {}) do io.stderr:write("matviews: warning: ", w, "\n") end
  output.emit(ctx, plan_cmd.document(p), function()
    for _, t in ipairs(p.tracking and p.tracking.installed or {}) do print("tracking changes of " .. t) end
    for _, t in ipairs(p.tracking and p.tracking.switched or {}) do print("tracking changes of " .. t .. " (trigger replaced)") end
    if p.tracking then print_trigger(p.tracking) end
    if #p.actions == 0 then print("nothing to do") return end
    if args.dry_run then plan_cmd.print_actions(p) print("dry run: nothing applied") return end
    for _, a in ipairs(p.actions) do if a.status then print(outcome(a)) end end
    for _, n in ipairs(p.notes) do print("note: " .. n) end
    local done = 0
    for _, a in ipairs(p.actions) do if a.status == "success" then done = done + 1 end end
    print(p.ok and ("applied %d action%s"):format(done, done == 1 and "" or "s")
      or ("failed after %d of %d actions; the rest is not applied"):format(done, #p.actions))
  end)
  return p.ok and 0 or 1
end

return M
