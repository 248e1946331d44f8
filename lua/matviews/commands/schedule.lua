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
    times[#times + 1], times[#times + 2], times[#times + 3] = r.next_run, r.last_slot, r.unclaimed_since
  end
  local shown = require("matviews.format").iso_epochs(mv.conn(), times, 1 + 3 * #plan)
  local warnings = {}
  for i, r in ipairs(plan) do
    local row = { name = r.name, schedule = r.schedule_cron or mv.null, next_run = shown[3 * i - 1] or mv.null,
      last_slot = shown[3 * i] or mv.null, error = r.error or mv.null, unclaimed_since = shown[3 * i + 1] or mv.null }
    rows[#rows + 1] = row
    if r.error then code = 1 end
    if r.unclaimed_since then
      warnings[#warnings + 1] = ("matviews: warning: no scheduler has claimed a slot of %s since %s (two periods):"
        .. " is `matviews scheduler` (or `worker --schedule`) running?\n"):format(r.name, row.unclaimed_since)
    end
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
  io.stderr:write(table.concat(warnings))
  return code
end

return M
