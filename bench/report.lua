-- Benchmark (not a test): `matviews report --html` over the history of
-- bench/history.lua (1,000,000 refresh runs over 100 views, 60 days): the
-- data (mv.report, the queries), the page (matviews.report_html: Graphviz,
-- escaping, the charting library inlined), the whole `./matviews report
-- --html FILE` process, each the median of 5, and the file's size; for the
-- default window (30 days: half the history) and for --since all.
-- Prints figures; asserts nothing.
--   ./matviews bench/report.lua [ROWS] [VIEWS]     (sh bench/report.sh runs it on a scratch cluster)
local mv = _G.mv or require "matviews"
local report_html = require "matviews.report_html"
local clock = mv.core.sys.monotonic_ms

local ROWS = tonumber(arg and arg[1]) or 1000000
local VIEWS = tonumber(arg and arg[2]) or 100

local function say(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

-- Median of 5 runs of fn, in ms, and fn's last result.
local function median_ms(fn)
  local t, r = {}, nil
  for i = 1, 5 do
    local t0 = clock()
    r = fn()
    t[i] = clock() - t0
  end
  table.sort(t)
  return t[3], r
end

mv.init()
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "bench"
local load_ms = dofile(here .. "/history.lua")(mv, ROWS, VIEWS)
local n = mv.query("SELECT count(*) AS n FROM mat_view_refresh_runs")[1].n
say("rows: %d refresh runs over %d views (5%% failed, spread over 60 days), loaded in %.1f s", n, VIEWS, load_ms / 1000)
say("graphviz: %s", os.execute("command -v dot >/dev/null 2>&1") and "dot installed (graph drawn at generation)" or "no dot (graph drawn by the page)")

local scratch = assert(mv.core.sys.mkdtemp()) -- private; removed at the end
local out = scratch .. "/report.html"
for _, since in ipairs({ "30d", "all" }) do
  local data_ms, data = median_ms(function() return mv.report({ since = since }) end)
  local page_ms, page = median_ms(function() return report_html.render(data) end)
  local runs, points, bucketed = 0, 0, 0
  for _, v in ipairs(data.views) do
    runs = runs + v.refresh_runs
    points = points + #v.points.t
    if v.points.mode == "buckets" then bucketed = bucketed + 1 end
  end
  local proc_ms = median_ms(function()
    return os.execute(("./matviews report --html %s --since %s >/dev/null"):format(out, since))
  end)
  local f = io.open(out, "rb")
  local size = f and f:seek("end") or 0
  if f then f:close() end
  say("--since %s: %d runs in the window, %d chart points (%d of %d views aggregated); data %.0f ms, page %.0f ms; "
    .. "whole `matviews report --html` process %.0f ms; file %.2f MB (%d bytes; the page in memory %d bytes)",
    since, runs, points, bucketed, #data.views, data_ms, page_ms, proc_ms, size / 1048576, size, #page)
end
os.remove(out)
os.remove(scratch)
