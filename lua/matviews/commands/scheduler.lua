-- `matviews scheduler [--once] [--json]`: the scheduling daemon. Each turn
-- (once a second, just after the second turns) claims the due slot of every
-- scheduled definition in mat_view_schedule_slots and queues its refresh in
-- the same transaction (matviews.schedule.tick): however many schedulers
-- run, on however many machines, each slot is claimed exactly once. The
-- queued refreshes are run by `matviews worker`. Runs until stopped, or one
-- turn with --once.
local M = {
  name = "scheduler",
  summary = "Run the schedules: queue each due refresh exactly once, across any number of schedulers.",
}

function M.configure(cmd)
  cmd:flag("--once", "One turn, then exit.")
  -- test hook: "now" is read from FILE (epoch seconds) at each turn, and
  -- each turn prints "turn T" once it is done; turns every 20 ms
  cmd:option("--clock"):hidden(true)
end

-- Milliseconds to wait for the next turn: just past the next whole second
-- of the database's clock, so 1-second schedules get one turn per slot.
local function until_next_second(conn)
  -- numeric % (there is no float8 % operator)
  local frac = conn:query("SELECT (extract(epoch FROM clock_timestamp()) % 1)::float8 AS f")[1].f
  return math.floor((1 - frac) * 1000) + 20
end

-- The time of the fake clock in path (nil while it holds no number).
local function read_clock(path)
  local text = require("matviews.files").read(path)
  return text and math.tointeger(tonumber(text:match("%d+")))
end

function M.run(args, ctx)
  local mv = ctx.mv
  local schedule = require "matviews.schedule"
  local sys = mv.core.sys
  schedule.zone() -- an unknown zone is an error at start, not at every turn
  local doc, said, last = { scheduled = {} }, {}, nil
  if not ctx.options.json then
    io.stderr:write(("matviews scheduler: pid %d on %s, schedules read in %s\n"):format(
      sys.getpid(), sys.hostname(), schedule.zone()))
  end
  local reconnect = require "matviews.reconnect"
  while not sys.stop_signal() do
    -- a lost connection is reopened with backoff, said once (reconnect.step)
    local ok, wait = reconnect.step(mv, "scheduler", function()
      local now = args.clock and read_clock(args.clock)
      if not args.clock or (now and now ~= last) then
        schedule.report(ctx, doc, schedule.tick(now), said)
        if args.clock then last = now; print("turn " .. now); io.stdout:flush() end
      end
      if args.once then return nil end
      return args.clock and 20 or until_next_second(mv.conn())
    end)
    if not ok or args.once then break end
    if wait then sys.sleep_ms(wait) end
  end
  if ctx.options.json then require("matviews.output").json(doc) end
  local sig = sys.stop_signal()
  return sig and 128 + sig or 0
end

return M
