-- `matviews refresh NAME...|--id N|--all [--row-count S]`: refreshes each
-- view with its definition's strategy through its recorded refresh job.
local operate = require "matviews.operate"

local M = {
  name = "refresh",
  summary = "Refresh materialized views with their strategy (recorded runs).",
}

function M.configure(cmd)
  operate.configure_targets(cmd)
  cmd:option("--row-count", "Row count after refreshing (env ROW_COUNT_STRATEGY).")
    :choices({ "none", "estimated", "exact" })
  cmd:epilog("Unknown names, or a schema-qualified materialized view without a definition, exit 2 before anything runs.")
end

function M.run(args, ctx)
  local opts = { row_count_strategy = operate.row_count(args) }
  return operate.run("refresh", args, ctx, opts, "refreshing")
end

return M
