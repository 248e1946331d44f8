-- `matviews create NAME...|--id N|--all [--force] [--no-data] [--row-count S]`:
-- creates each view through its recorded create job (see matviews.operate).
local operate = require "matviews.operate"

local M = {
  name = "create",
  summary = "Create materialized views from their definitions (recorded runs).",
}

function M.configure(cmd)
  operate.configure_targets(cmd)
  operate.configure_overlap(cmd)
  operate.configure_flag(cmd, "force", operate.ENV.force, "Drop and re-create a view that exists")
  cmd:flag("--no-data", "Create the view WITH NO DATA (not populated).")
  operate.configure_row_count(cmd, "Row count after creating (env MATVIEWS_ROW_COUNT_STRATEGY).")
end

function M.run(args, ctx)
  local opts = {
    on_overlap = args.on_overlap,
    force = operate.flag(args, "force", operate.ENV.force),
    no_data = args.no_data or false,
    row_count_strategy = operate.row_count(args),
  }
  return operate.run("create", args, ctx, opts, "creating")
end

return M
