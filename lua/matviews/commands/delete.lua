-- `matviews delete NAME...|--id N|--all [--cascade] [--if-exists]`: drops
-- each view through its recorded delete job; the definitions stay.
local operate = require "matviews.operate"

local M = {
  name = "delete",
  summary = "Drop materialized views (recorded runs; definitions are kept).",
}

function M.configure(cmd)
  operate.configure_targets(cmd)
  operate.configure_overlap(cmd)
  operate.configure_flag(cmd, "cascade", operate.ENV.cascade, "Drop the objects that depend on the view too")
  cmd:flag("--if-exists", "A missing view is skipped, not an error.")
end

function M.run(args, ctx)
  local opts = {
    on_overlap = args.on_overlap,
    cascade = operate.flag(args, "cascade", operate.ENV.cascade),
    if_exists = args.if_exists or false,
  }
  return operate.run("delete", args, ctx, opts, "deleting")
end

return M
