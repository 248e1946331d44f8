-- `matviews init`: installs or upgrades the catalog; twice changes nothing.
local M = {
  name = "init",
  summary = "Install or upgrade the matviews catalog in the database (idempotent).",
}

function M.run(_, ctx)
  local r = ctx.mv.init()
  require("matviews.output").emit(ctx, r, function(d)
    if #d.applied == 0 then
      print(("catalog up to date (version %d)"):format(d.version))
    else
      print(("catalog at version %d; applied: %s"):format(d.version, table.concat(d.applied, ", ")))
    end
  end)
  return 0
end

return M
