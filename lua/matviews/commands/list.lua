-- `matviews list`: the definitions with their strategy, whether the view
-- exists and is populated, the last run of any operation and freshness.
local output = require "matviews.output"
local fmt = require "matviews.format"

local M = {
  name = "list",
  summary = "List definitions: strategy, existence, last run, freshness.",
}

local COLUMNS = {
  { "id", "ID", align = "right" }, { "view", "VIEW" }, { "schema", "SCHEMA" }, { "strategy", "STRATEGY" },
  { "state", "STATE" }, { "last", "LAST RUN" }, { "fresh", "FRESH" },
}

function M.run(_, ctx)
  local rows = require("matviews.reports").list()
  output.emit(ctx, output.array(rows), function(list)
    for _, r in ipairs(list) do
      r.state = not r.exists and "missing" or (r.populated and "populated" or "not populated")
      if r.last_op ~= output.null then
        r.last = ("%s %s %s"):format(r.last_op, r.last_status, fmt.time(r.last_run_at))
      end
      r.fresh = fmt.age(r.fresh_age_s)
    end
    io.write(output.table(list, COLUMNS))
  end)
  -- a strategy no file declares: an error naming the file and line, after the listing
  local errs = {}
  for _, r in ipairs(rows) do if r.strategy_error then errs[r.view] = r.strategy_error end end
  return require("matviews.strategies").report_errors(errs) > 0 and 1 or 0
end

return M
