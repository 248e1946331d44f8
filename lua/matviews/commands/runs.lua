-- `matviews runs [NAME] [--op OP] [--status S] [--since 24h] [--limit N]`:
-- recorded runs newest first across the three run tables; a run left
-- running by a backend that is gone shows as orphaned. `runs show OP:ID`
-- prints one run in full.
local output = require "matviews.output"
local fmt = require "matviews.format"

local M = {
  name = "runs",
  summary = "List recorded runs, newest first (orphaned runs marked).",
}

-- --status accepts the run status names (in code order) and "orphaned".
local STATUSES = { table.unpack(require("matviews.vocab").STATUS_LIST) }
STATUSES[#STATUSES + 1] = "orphaned"

function M.configure(cmd)
  cmd:argument("name", "A definition name (schema-qualified allowed), or show."):args("?")
  cmd:argument("run", "With show: the run, OP:ID (refresh:4; refresh/4 too)."):args("?")
  cmd:option("--op", "Only this operation."):choices(require("matviews.catalog").OPS)
  cmd:option("--status", "Only this status."):choices(STATUSES)
  cmd:option("--since", "Only runs created within this duration (90s, 30m, 24h, 7d, 2w).")
  cmd:option("--limit", "At most N runs.", "50"):convert(fmt.positive_integer)
end

local COLUMNS = {
  { "id", "ID", align = "right" }, { "op", "OP" }, { "view", "VIEW" }, { "shown_status", "STATUS" },
  { "started", "STARTED" }, { "duration_ms", "MS", align = "right" }, { "rows_count", "ROWS", align = "right" },
  { "where", "BY" }, { "short_error", "ERROR" },
}

-- `runs show OP:ID`: one run in full (matviews.run_detail).
local function show(ref, ctx)
  local detail = require "matviews.run_detail"
  local r = detail.get(detail.parse(ref))
  output.emit(ctx, r, function(run) io.write(detail.text(run)) end)
  return 0
end

function M.run(args, ctx)
  if args.run then
    if args.name ~= "show" then require("matviews.targets").usage("too many arguments") end
    return show(args.run, ctx)
  end
  local runs = ctx.mv.runs({ view = args.name, op = args.op, status = args.status, since = args.since,
    limit = args.limit })
  output.emit(ctx, output.array(runs), function(rows)
    for _, r in ipairs(rows) do
      r.shown_status = r.orphaned and "orphaned" or r.status
      r.started = fmt.time(r.started_at)
      r.where = fmt.who(r)
      r.short_error = fmt.shorten(r.error, 60)
    end
    io.write(output.table(rows, COLUMNS))
  end)
  return 0
end

return M
