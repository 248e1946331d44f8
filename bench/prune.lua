-- Benchmark (not a test): 1,000,000 refresh runs over 100 views, pruned with
-- keep_last = 500 (failures kept, the default), and the reports (`stats` by
-- default and over the whole history, `runs --limit 50`) timed before and
-- after. Prints figures; asserts nothing.
--   ./matviews bench/prune.lua [ROWS] [VIEWS]     (sh bench/prune.sh runs it on a scratch cluster)
local mv = _G.mv or require "matviews"
local retention = require "matviews.retention"
local clock = mv.core.sys.monotonic_ms

local ROWS = tonumber(arg and arg[1]) or 1000000
local VIEWS = tonumber(arg and arg[2]) or 100
local KEEP = 500

-- Milliseconds fn takes.
local function time(fn)
  local t0 = clock()
  local r = fn()
  return clock() - t0, r
end

-- Median of 5 runs of fn, in ms.
local function median_ms(fn)
  local t = {}
  for i = 1, 5 do t[i] = time(fn) end
  table.sort(t)
  return t[3]
end

-- The reports as `matviews stats` and `matviews runs --limit 50` compute
-- them (mv.stats, mv.runs: the same SQL, in this process), then the whole
-- `./matviews stats` process (start, connect, query, print), median of 5.
local function reports_ms()
  local r = {
    default = median_ms(function() return mv.stats() end),
    all = median_ms(function() return mv.stats({ since = "all" }) end),
    runs = median_ms(function() return mv.runs({ limit = 50 }) end),
  }
  local f = io.open("./matviews")
  if f then
    f:close()
    r.process = median_ms(function() return os.execute("./matviews stats >/dev/null") end)
  end
  return r
end

local function say(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

mv.init()
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "bench"
local ms = dofile(here .. "/history.lua")(mv, ROWS, VIEWS)
local n = mv.query("SELECT count(*) AS n FROM mat_view_refresh_runs")[1].n
say("rows: %d refresh runs over %d views (5%% failed, spread over 60 days), loaded in %.1f s", n, VIEWS, ms / 1000)

-- Prints the report timings of reports_ms, labelled when.
local function say_reports(when)
  local r = reports_ms()
  say("%s: stats (default, last %s) %.0f ms; stats --since all %.0f ms; runs --limit 50 %.1f ms; "
    .. "whole `matviews stats` process %s ms", when, require("matviews.reports").STATS_SINCE, r.default, r.all,
    r.runs, r.process and ("%.0f"):format(r.process) or "-")
end

say_reports("before prune")

local plan_ms, items = time(function() return retention.plan({ policy = { keep_last = KEEP } }) end)
local st = {}
local del_ms, deleted = time(function() return retention.delete(items, { stats = st }) end)
local left = mv.query("SELECT count(*) AS n FROM mat_view_refresh_runs")[1].n
say("prune keep_last = %d: %.1f s total (selecting %.1f s, deleting + VACUUM %.1f s); %d deleted, %d left",
  KEEP, (plan_ms + del_ms) / 1000, plan_ms / 1000, del_ms / 1000, deleted, left)
say("  %d DELETE statements of up to %d ids, the slowest %.0f ms", st.batches, retention.BATCH, st.slowest_ms)

say_reports("after prune")
