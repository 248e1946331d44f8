-- `matviews enqueue OP NAME...`: puts create/refresh/delete jobs on the
-- queue for `matviews worker`, whatever job_adapter says.
local M = {
  name = "enqueue",
  summary = "Queue create, refresh or delete jobs for `matviews worker`.",
}

function M.configure(cmd)
  cmd:argument("op", "create, refresh or delete."):choices(require("matviews.catalog").OPS)
  cmd:argument("names", "Definition names."):args("+")
  cmd:flag("--force", "create: drop and recreate an existing view.")
  cmd:flag("--no-data", "create: create it unpopulated.")
  require("matviews.operate").configure_row_count(cmd, "Row count strategy.")
  cmd:flag("--cascade", "delete: drop dependents too.")
  cmd:flag("--if-exists", "delete: a missing view is skipped.")
  cmd:flag("--if-changed", "refresh: skip (record as skipped) a view whose sources did not change.")
  cmd:flag("--no-if-changed", "refresh: refresh even a view that says refresh_when = \"changed\".")
  require("matviews.operate").configure_overlap(cmd)
  require("matviews.operate").configure_args(cmd)
end

-- The job options the arguments give for op.
local function options(args)
  local o = { row_count_strategy = args.row_count, on_overlap = args.on_overlap }
  if args.op == "refresh" then
    o.if_changed = require("matviews.operate").flag_or_nil(args, "if-changed")
    o.args = require("matviews.operate").strategy_args(args) -- the strategy's ctx.args, kept in the job's options
  end
  if args.op ~= "refresh" and #(args.arg or {}) > 0 then
    require("matviews.targets").usage("--arg is for refresh jobs: it gives the view's strategy ctx.args")
  end
  if args.op == "create" then o.force, o.no_data = args.force or nil, args.no_data or nil end
  if args.op == "delete" then o.cascade, o.if_exists = args.cascade or nil, args.if_exists or nil end
  return o
end

function M.run(args, ctx)
  local queue = require "matviews.queue"
  local targets = require "matviews.targets"
  for _, name in ipairs(args.names) do targets.resolve_one(ctx.mv.conn(), name) end -- usage errors first
  local jobs = {}
  ctx.mv.transaction(function(conn)
    for _, name in ipairs(args.names) do
      local o = options(args)
      o.conn = conn
      jobs[#jobs + 1] = queue.enqueue(args.op, name, o)
    end
  end)
  require("matviews.output").emit(ctx, { jobs = jobs }, function(d)
    for _, j in ipairs(d.jobs) do print(("queued job %d: %s %s"):format(j.job_id, j.op, j.view)) end
  end)
  return 0
end

return M
