-- `matviews plan [--definitions DIR]`: changes nothing; shows per view the
-- file against the catalog and the catalog against the live database, with
-- what apply/create/refresh would do. Exit 0 in sync, 1 on drift.
local output = require "matviews.output"

local M = {
  name = "plan",
  summary = "Show what differs between files, catalog and database (exit 1 on drift).",
}

function M.configure(cmd)
  cmd:option("--definitions", "Directory of definition files (default: from matviews.lua, else definitions/).")
end

function M.run(args, ctx)
  local p, errs = require("matviews.plan").run({
    definitions = require("matviews.config").definitions_dir(args.definitions) })
  if not p then return require("matviews.commands.apply").report_errors(ctx, errs) end
  output.emit(ctx, p, function(d)
    if not d.catalog_installed then print("catalog not installed (matviews init): every definition is new") end
    for _, v in ipairs(d.views) do
      if v.in_sync then print(v.name .. ": in sync")
      else
        print(v.name .. (v.file and (" (" .. v.file .. ")") or "") .. ":")
        for _, a in ipairs(v.actions) do print("  " .. a) end
      end
    end
    if #d.views == 0 then print("no definitions") end
    print(d.in_sync and "in sync" or "drift")
  end)
  return p.in_sync and 0 or 1
end

return M
