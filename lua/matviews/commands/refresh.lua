-- `matviews refresh NAME...|--id N|--all [--row-count S] [--parallel N]
-- [--upstream] [--downstream]`: refreshes each view with its definition's
-- strategy through its recorded refresh job; the last three go through
-- matviews.parallel (dependency order, N processes).
local operate = require "matviews.operate"

local M = {
  name = "refresh",
  summary = "Refresh materialized views with their strategy (recorded runs).",
}

function M.configure(cmd)
  operate.configure_targets(cmd)
  operate.configure_row_count(cmd, "Row count after refreshing (env MATVIEWS_ROW_COUNT_STRATEGY).")
  cmd:option("--parallel", "Refresh in dependency order, N views at a time (on N long-lived workers).")
  cmd:option("--arg", "KEY=VALUE for the view's strategy (ctx.args); repeatable."):args(1):count("*")
  cmd:flag("--upstream", "First refresh what the views read, recursively.")
  cmd:flag("--downstream", "Afterwards refresh what reads the views, recursively.")
end

function M.run(args, ctx)
  local opts = { row_count_strategy = operate.row_count(args) }
  for _, kv in ipairs(args.arg or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then require("matviews.targets").usage(("--arg takes KEY=VALUE, got %q"):format(kv)) end
    opts.args = opts.args or {}
    opts.args[k] = v
  end
  if args.parallel or args.upstream or args.downstream then
    return require("matviews.parallel").command(args, ctx, opts)
  end
  return operate.run("refresh", args, ctx, opts, "refreshing")
end

return M
