-- `matviews report` and mv.report over the fixture history of
-- spec/fixtures/report_history.lua (3 views in a chain, 200 refresh runs,
-- failures, script text planted in a comment, the SQL and errors): the data
-- against the fixture's figures, aggregation past the points budget, the
-- escaping of every planted text, the command's outputs and refusals.
local H = require "spec.helper"
local mv = require "matviews"
local report = require "matviews.report"
local html = require "matviews.report_html"
local fixture = require "spec.fixtures.report_history"

local function by_view(views)
  local t = {}
  for _, v in ipairs(views) do t[v.view] = v end
  return t
end

-- Occurrences of plain text needle in s.
local function count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

describe("mv.report", function()
  local PLANT
  setup(function()
    H.fresh_db()
    local _
    _, PLANT = fixture()
  end)

  it("gives each view its runs, failures, last runs and the graph", function()
    local d = mv.report()
    assert.are.equal("30d", d.since)
    local v = by_view(d.views)
    assert.are.same({ "rep_a", "rep_b", "rep_c" }, { d.views[1].view, d.views[2].view, d.views[3].view })
    assert.are.equal(80, v.rep_a.refresh_runs)
    assert.are.equal(70, v.rep_b.refresh_runs)
    assert.are.equal(7, v.rep_b.refresh_failed)
    assert.are.equal(7, v.rep_b.failures)
    assert.are.equal(2, v.rep_c.failures)
    assert.are.equal(0, v.rep_a.failures)
    assert.are.equal("failed", v.rep_b.last_status)
    assert.are.equal("concurrent", v.rep_b.strategy)
    assert.are.equal("groups " .. PLANT, v.rep_a.comment)
    assert.matches("FROM rep_a", v.rep_b.sql, 1, true)
    assert.is_true(v.rep_a.size_bytes > 0)
    assert.is_true(v.rep_a.median_ms >= 100 and v.rep_a.median_ms < 500)
    assert.is_true(v.rep_c.p95_ms > v.rep_c.median_ms)
    assert.are.equal(900, v.rep_a.schedule_period_s)
    -- one point per run, oldest first, failures among them
    local p = v.rep_b.points
    assert.are.equal("runs", p.mode)
    assert.are.equal(70, #p.t)
    assert.are.equal(70, #p.ms)
    local failed = 0
    for i, s in ipairs(p.status) do
      if s == "failed" then failed = failed + 1 end
      if i > 1 then assert.is_true(p.t[i] >= p.t[i - 1]) end
    end
    assert.are.equal(7, failed)
    -- the last 20 runs, newest first, errors in full
    assert.are.equal(20, #v.rep_b.recent)
    local last = v.rep_b.recent[1]
    assert.are.equal("refresh", last.op)
    assert.are.equal("failed", last.status)
    assert.are.equal("deadlock " .. PLANT .. " #0", last.error)
    assert.are.equal("57014", last.sqlstate)
    -- failures grouped by view and error, most frequent first
    assert.are.equal(2, #d.failures)
    assert.are.same({ "rep_b", "refresh", "57014", 7 },
      { d.failures[1].view, d.failures[1].op, d.failures[1].sqlstate, d.failures[1].count })
    assert.are.same({ "rep_c", "40P01", 2 }, { d.failures[2].view, d.failures[2].sqlstate, d.failures[2].count })
    assert.is_true(d.failures[1].first_at < d.failures[1].last_at)
    assert.are.same({ { from = "rep_a", to = "rep_b", declared = false }, { from = "rep_b", to = "rep_c", declared = false } },
      d.graph.edges)
  end)

  it("aggregates a view's runs per time period past its points budget", function()
    local saved = report.MAX_VIEW_POINTS
    report.MAX_VIEW_POINTS, report.MIN_VIEW_POINTS = 60, 10
    local ok, d = pcall(mv.report, { views = { "rep_a", "rep_c" } })
    report.MAX_VIEW_POINTS, report.MIN_VIEW_POINTS = saved, 100
    assert(ok, tostring(d))
    local v = by_view(d.views)
    assert.is_nil(v.rep_b)
    assert.are.equal("buckets", v.rep_a.points.mode)
    assert.are.equal("runs", v.rep_c.points.mode)       -- 50 runs: within the budget
    local n = 0
    for _, k in ipairs(v.rep_a.points.n) do n = n + k end
    assert.are.equal(80, n)
    assert.is_true(#v.rep_a.points.t <= 60)
    assert.matches("1 view has more than 60 refresh runs in the window: its chart is aggregated per time period.",
      html.render(d), 1, true)
  end)

  it("escapes every planted text and runs only its own scripts", function()
    local page = html.render(mv.report())
    assert.are.equal(0, count(page, PLANT))
    assert.are.equal(3, count(page:lower(), "<script"))      -- data, library, page
    local escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert.is_true(count(page, "groups " .. escaped) == 1)   -- the comment
    assert.is_true(count(page, "FROM rep_a -- " .. escaped) == 1) -- the SQL
    assert.is_true(count(page, "deadlock " .. escaped) >= 3)  -- errors: last runs and failures
    -- the data block holds the names only, with < escaped for JSON
    local data = page:match('<script type="application/json" id="report%-data">(.-)</script>')
    assert.is_nil(data:find("<", 1, true))
    local nonce = page:match("script%-src 'nonce%-(%x+)'")
    assert.are.equal(32, #nonce)
    assert.are.equal(2, count(page, '<script nonce="' .. nonce .. '">'))
    assert.matches("default-src 'none'", page, 1, true)
  end)

  it("draws the graph in the page when Graphviz is not used, with the list either way", function()
    local page = html.render(mv.report(), { graphviz = false })
    assert.matches('<div class="graph" data-renderer="page" id="graph-canvas"></div>', page, 1, true)
    assert.matches("<li>rep_a → rep_b</li><li>rep_b → rep_c</li>", page, 1, true)
  end)

  it("refuses without the charting library, naming make deps", function()
    local ok, err = pcall(html.render, mv.report(), { lib_dirs = { H.tmp .. "/no-such-dir" } })
    assert.is_false(ok)
    assert.are.equal("the charting library (uPlot) is not installed: run `make deps` in the matviews source tree "
      .. "(it runs npm ci), or `make install` (looked in " .. H.tmp .. "/no-such-dir)", err.message)
  end)
end)

describe("mv.report on a long history", function()
  setup(function()
    H.fresh_db("report_sample")
    mv.init()
    mv.definitions.save({ name = "busy", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "quiet", sql = "SELECT 2 AS x" })
    -- 20,000 runs of busy over 20 days, 10 of quiet
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms,
        rows_count, created_at)
      SELECT d.id, 2, t, t, 100 + g % 50, 1, t
      FROM (SELECT g, now() - make_interval(secs => g * 86.4) AS t FROM generate_series(1, 20000) g) s,
           mat_view_definitions d WHERE d.name = 'busy'
      UNION ALL
      SELECT d.id, 2, now() - make_interval(days => g), now() - make_interval(days => g), 7, 1, now() - make_interval(days => g)
      FROM generate_series(1, 10) g, mat_view_definitions d WHERE d.name = 'quiet']])
    mv.exec("ANALYZE mat_view_refresh_runs")
  end)

  it("reads a sample for the views with many runs, and says so", function()
    local saved = report.SAMPLE_ROWS
    report.SAMPLE_ROWS = 2000
    local ok, d = pcall(mv.report)
    report.SAMPLE_ROWS = saved
    assert(ok, tostring(d))
    assert.are.equal(2000 / 20010, d.sample.fraction)   -- of the planner's count
    assert.are.equal(20010, d.sample.history_runs)
    local v = by_view(d.views)
    assert.is_true(v.busy.sampled)
    assert.are.equal("buckets", v.busy.points.mode)
    assert.is_true(v.busy.refresh_runs > 10000 and v.busy.refresh_runs < 30000, tostring(v.busy.refresh_runs))
    assert.is_true(v.busy.median_ms >= 100 and v.busy.median_ms < 150)
    assert.is_nil(v.quiet.sampled)                      -- few runs: read whole
    assert.are.equal(10, v.quiet.refresh_runs)
    assert.are.equal("runs", v.quiet.points.mode)
    assert.matches("The refresh history holds about 20010 runs: the durations and charts of 1 view come from a 10 % "
      .. "sample of it (their run counts are estimates); failures and last runs are exact.", html.render(d), 1, true)
  end)
end)

describe("mv.report of views in several schemas", function()
  it("names each by its label, once qualified", function()
    H.fresh_db("report_schemas")
    mv.init()
    mv.exec("CREATE SCHEMA other")
    mv.definitions.save({ name = "dup", sql = "SELECT 1 AS x" })
    mv.definitions.save({ schema_name = "other", name = "dup", sql = "SELECT 2 AS x" })
    mv.definitions.save({ schema_name = "other", name = "solo", sql = "SELECT 3 AS x" })
    local d = mv.report()
    assert.are.same({ "other.dup", "public.dup", "solo" }, { d.views[1].view, d.views[2].view, d.views[3].view })
    local page = html.render(d)
    for _, heading in ipairs({ "<h3>other.dup</h3>", "<h3>public.dup</h3>", "<h3>other.solo</h3>" }) do
      assert.matches(heading, page, 1, true)
    end
  end)
end)

describe("matviews report", function()
  setup(function() H.fresh_db(); fixture() end)

  it("writes the page to a file, atomically, and says so", function()
    local file = H.tmp .. "/report_spec.html"
    os.remove(file)
    local r = H.mv("report --html " .. H.q(file) .. " --since 2w")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^wrote " .. file:gsub("%p", "%%%0") .. ": 3 views, %d+ kB\n$", r.out)
    local page = H.slurp(file)
    assert.matches("^<!doctype html>", page)
    assert.matches("over the last 2w: 3 views, 200 refresh runs.", page, 1, true)
    assert.is_false(require("matviews.files").exists(file .. ".tmp"))
  end)

  it("writes to stdout with -, for the views named", function()
    local r = H.mv("report --html - rep_c")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^<!doctype html>", r.out)
    assert.matches("</html>\n$", r.out)
    assert.matches("1 view, 50 refresh runs", r.out, 1, true)
    assert.are.equal("", r.err)
  end)

  it("prints the data with --json", function()
    local r = H.mv("report --json --since all")
    assert.are.equal(0, r.code, r.err)
    local d = mv.json.decode(r.out)
    assert.are.equal("all", d.since)
    assert.are.equal(3, #d.views)
    assert.are.equal(2, #d.failures)
  end)
end)
