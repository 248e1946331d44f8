-- `matviews init`: installs or upgrades the catalog; twice changes nothing.
local M = {
  name = "init",
  summary = "Install or upgrade the matviews catalog in the database (idempotent).",
}

function M.configure(cmd)
  cmd:option("--grant-read", "Grant read-only access to the catalog to ROLE (dashboards)."):argname("<role>")
end

function M.run(args, ctx)
  local r = ctx.mv.init()
  if args.grant_read then
    r.granted = { role = args.grant_read, tables = require("matviews.catalog").grant_read(args.grant_read) }
  end
  require("matviews.output").emit(ctx, r, function(d)
    if #d.applied == 0 then
      print(("catalog up to date (version %d)"):format(d.version))
    else
      print(("catalog at version %d; applied: %s"):format(d.version, table.concat(d.applied, ", ")))
    end
    if d.granted then
      print(("granted SELECT on %d tables to %s"):format(#d.granted.tables, d.granted.role))
    end
  end)
  return 0
end

return M
