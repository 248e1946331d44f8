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
  local rows, code, times = {}, 0, { now }
  for _, r in ipairs(plan) do
    times[#times + 1], times[#times + 2] = r.next_run, r.last_slot
  end
  local shown = require("matviews.format").iso_epochs(mv.conn(), times, 1 + 2 * #plan)
  for i, r in ipairs(plan) do
    rows[#rows + 1] = { name = r.name, schedule = r.schedule_cron or mv.null, next_run = shown[2 * i] or mv.null,
      last_slot = shown[2 * i + 1] or mv.null, error = r.error or mv.null }
    if r.error then code = 1 end
  end
  if ctx.options.json then
    output.json({ now = shown[1], time_zone = tz, definitions = output.array(rows) })
  else
    io.write(output.table(rows, { { "name", "view" }, { "schedule" }, { "next_run", "next run" },
      { "last_slot", "last slot run" }, { "error" } }))
    print(("(schedules are read in %s)"):format(tz))
  end
  for _, r in ipairs(rows) do
    if r.error ~= mv.null then io.stderr:write("matviews: ", r.name, ": ", r.error, "\n") end
  end
  return code
end

return M
