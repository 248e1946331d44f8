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
  operate.configure_overlap(cmd)
  operate.configure_row_count(cmd, "Row count after refreshing (env MATVIEWS_ROW_COUNT_STRATEGY).")
  cmd:flag("--if-changed", "Skip (record as skipped) a view no committed change of its sources touched since its last refresh.")
  cmd:flag("--no-if-changed", "Refresh even a view that says refresh_when = \"changed\".")
  cmd:option("--parallel", "Refresh in dependency order, N views at a time (on N long-lived workers).")
  operate.configure_args(cmd)
  cmd:flag("--upstream", "First refresh what the views read, recursively.")
  cmd:flag("--downstream", "Afterwards refresh what reads the views, recursively.")
end

function M.run(args, ctx)
  local opts = { row_count_strategy = operate.row_count(args), on_overlap = args.on_overlap,
    if_changed = require("matviews.operate").flag_or_nil(args, "if-changed"), args = operate.strategy_args(args) }
  if args.parallel or args.upstream or args.downstream then
    return require("matviews.parallel").command(args, ctx, opts)
  end
  return operate.run("refresh", args, ctx, opts, "refreshing")
end

return M
