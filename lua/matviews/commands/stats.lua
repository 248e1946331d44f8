-- `matviews stats [NAME] [--since 7d] [--op refresh]`: per view duration
-- statistics of successful runs and failures over the runs created within
-- --since (default 7d, `all` for the whole history), the last run, freshness
-- and the slow flag (last duration above 2x the average of the 10 runs
-- before it).
local output = require "matviews.output"
local fmt = require "matviews.format"
local reports = require "matviews.reports"

local M = {
  name = "stats",
  summary = "Duration statistics, failures and freshness per view.",
}

function M.configure(cmd)
  cmd:argument("name", "A definition name (schema-qualified allowed)."):args("?")
  cmd:option("--since", "Aggregate the runs created within this duration (90s, 30m, 24h, 7d, 2w), "
    .. "or all for the whole history.", reports.STATS_SINCE)
  cmd:option("--op", "Which runs to aggregate.", "refresh"):choices(require("matviews.catalog").OPS)
end

local COLUMNS = {
  { "view", "VIEW" }, { "success_count", "OK", align = "right" }, { "failure_count", "FAILED", align = "right" },
  { "avg_ms", "AVG MS", align = "right" }, { "min_ms", "MIN", align = "right" },
  { "p95_ms", "P95", align = "right" }, { "max_ms", "MAX", align = "right" }, { "last_status", "LAST" },
  { "last_duration_ms", "LAST MS", align = "right" }, { "last_rows_count", "ROWS", align = "right" },
  { "fresh", "FRESH" }, { "slow_mark", "SLOW" },
}

function M.run(args, ctx)
  local rows = ctx.mv.stats({ view = args.name, since = args.since, op = args.op })
  output.emit(ctx, output.array(rows), function(list)
    for _, r in ipairs(list) do
      -- whole milliseconds, as MIN, MAX and LAST MS (--json keeps the decimal)
      for _, k in ipairs({ "avg_ms", "p95_ms" }) do
        if type(r[k]) == "number" then r[k] = math.floor(r[k] + 0.5) end
      end
      r.fresh = fmt.age(r.fresh_age_s)
      r.slow_mark = r.slow and "slow" or ""
    end
    io.write(output.table(list, COLUMNS))
    io.write(args.since == "all" and "OK, FAILED and durations: all runs\n"
      or ("OK, FAILED and durations: runs of the last %s\n"):format(args.since))
  end)
  -- a view of these whose strategy no file declares: an error naming the file and line
  local strategies = require "matviews.strategies"
  return strategies.report_errors(strategies.catalog_errors(ctx.mv.conn()), rows, "view") > 0 and 1 or 0
end

return M
