-- `matviews apply [--prune] [--definitions DIR]`: syncs the definition files
-- into the catalog in one transaction and reports each view as inserted,
-- updated (which keys), unchanged or deleted (--prune, after the prompt).
local output = require "matviews.output"
local prompt = require "matviews.prompt"

local M = {
  name = "apply",
  summary = "Sync definitions/*.lua into the catalog (and indexes, grants of live views).",
  confirms = function(args) return args.prune end,
}

function M.configure(cmd)
  cmd:flag("--prune", "Delete definitions whose files are gone (asks first).")
  cmd:option("--definitions", "Directory of definition files (default: from matviews.lua, else definitions/).")
end

-- Prints the load errors (stderr, or the JSON document) and returns 1.
function M.report_errors(ctx, errs)
  if ctx.options.json then output.json({ ok = false, errors = output.array and output.array(errs) or errs })
  else
    for _, e in ipairs(errs) do io.stderr:write(e, "\n") end
    io.stderr:write(("%d error%s in definition files; nothing applied\n"):format(#errs, #errs == 1 and "" or "s"))
  end
  return 1
end

function M.run(args, ctx)
  local mv = ctx.mv
  local dsl, apply = require "matviews.dsl", require "matviews.apply"
  local defs, errs = dsl.load_dir(require("matviews.config").definitions_dir(args.definitions))
  if not defs then return M.report_errors(ctx, errs) end
  if args.prune then
    mv.init()
    local gone = apply.orphans(mv.conn(), defs)
    if #gone > 0 and not prompt.confirm(ctx, ("apply --prune deletes %d definition%s whose files are gone, with their run history: %s\n(the views themselves are not dropped)")
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
    local c = d.counts
    print(("%d inserted, %d updated, %d unchanged, %d deleted"):format(c.inserted, c.updated, c.unchanged, c.deleted))
  end)
  return 0
end

return M
