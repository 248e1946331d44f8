-- `matviews prune [--dry-run] [--view NAME]`: deletes run history beyond
-- the retention policies (configuration `retention`, a view's own
-- `retention`), reporting per table and view what it deletes (or would),
-- in batches of short transactions.
local output = require "matviews.output"
local prompt = require "matviews.prompt"

local M = {
  name = "prune",
  summary = "Delete run history beyond the retention policies.",
  confirms = function(args) return not args.dry_run end,
}

function M.configure(cmd)
  cmd:flag("--dry-run", "Report what would be deleted; delete nothing.")
  cmd:option("--view", "Only this view.")
  cmd:option("--batch", "Ids per DELETE statement.", tostring(require("matviews.retention").BATCH))
    :convert(function(s) local n = math.tointeger(tonumber(s)); if n and n > 0 then return n end; return nil, "--batch needs a positive integer" end)
  cmd:option("--definitions", "Directory of definition files, for custom (function) policies.")
end

-- The text report: one line per table and view, then the total.
local function render(d)
  local rows, total = {}, 0
  for _, it in ipairs(d.items) do
    if it.delete > 0 then rows[#rows + 1] = it end
    total = total + it.delete
  end
  local verb = d.dry_run and "would delete" or "deleted"
  if #rows > 0 then
    io.write(output.table(rows, { { "table" }, { "view" }, { "delete", verb, align = "right" }, { "keep", "kept", align = "right" } }))
  end
  print(("%s %d run%s"):format(verb, d.dry_run and total or d.deleted, (d.dry_run and total or d.deleted) == 1 and "" or "s"))
end

function M.run(args, ctx)
  local retention = require "matviews.retention"
  local opts = { view = args.view, batch_size = args.batch,
    definitions = require("matviews.config").definitions_dir(args.definitions) }
  local items = retention.plan(opts)
  local doomed = 0
  for _, it in ipairs(items) do doomed = doomed + it.delete end
  local doc = { dry_run = args.dry_run and true or false, deleted = 0, items = items }
  if not args.dry_run and doomed > 0 then
    if not prompt.confirm(ctx, ("prune deletes %d run%s"):format(doomed, doomed == 1 and "" or "s")) then
      if not prompt.must_refuse(ctx) then io.stderr:write("aborted; nothing deleted\n") end
      return prompt.ABORTED
    end
    doc.deleted = retention.delete(items, opts)
  end
  if not args.dry_run then doc.changes_pruned = require("matviews.changes").prune() end
  for _, it in ipairs(items) do it.ids = nil end
  output.emit(ctx, doc, render)
  return 0
end

return M
