-- `matviews schedule`: the next run of each definition's schedule (cron in
-- the configured zone), and the last slot claimed by a worker. Exit 1 when
-- a definition's cron expression is invalid.
local M = {
  name = "schedule",
  summary = "List the next scheduled refresh of each definition.",
}

function M.run(_, ctx)
  local mv = ctx.mv
  local schedule = require "matviews.schedule"
  local output = require "matviews.output"
  mv.definitions.check()
  local plan, now, tz = schedule.plan()
  local rows, code = {}, 0
  local function fmt(t) return t and mv.core.cron_format(t, tz) or mv.null end
  for _, r in ipairs(plan) do
    rows[#rows + 1] = { name = r.name, schedule = r.schedule_cron or mv.null, next_run = fmt(r.next_run),
      last_slot = fmt(r.last_slot), error = r.error or mv.null }
    if r.error then code = 1 end
  end
  if ctx.options.json then
    output.json({ now = fmt(now), time_zone = tz, definitions = output.array(rows) })
  else
    io.write(output.table(rows, { { "name", "view" }, { "schedule" }, { "next_run", "next run (" .. tz .. ")" },
      { "last_slot", "last slot run" }, { "error" } }))
  end
  for _, r in ipairs(rows) do
    if r.error ~= mv.null then io.stderr:write("matviews: ", r.name, ": ", r.error, "\n") end
  end
  return code
end

return M
