-- The report page in a real browser: headless Chromium (Debian's, installed
-- by `make browser-deps`) driven over the DevTools protocol by
-- spec/browser/check_report.js opens the page of the fixture history and
-- reports what it saw: no console error, no request, no dialog (the planted
-- alert() stays text), 3 overview rows, charts drawn, sorting and filtering,
-- the hover line, the graph (Graphviz's and the page's own), a screenshot
-- that is not blank; on a desktop in light and on a phone in dark.
local H = require "spec.helper"
local mv = require "matviews"
local html = require "matviews.report_html"
local fixture = require "spec.fixtures.report_history"

-- Runs the checker on page text; returns its JSON document.
local function check(page, size, scheme)
  local file = H.tmpfile(".html")
  H.write(file, page)
  local shot = file:gsub("%.html$", ".png")
  -- the browser's profile goes under the run's directory, which spec/run.sh removes
  local r = H.sh(("node spec/browser/check_report.js %s %s %s %s"):format(H.q(file), H.q(shot), size or "1280x900",
    scheme or "light"), { env = { TMPDIR = H.tmp } })
  local ok, doc = pcall(mv.json.decode, r.out)
  assert(ok and r.code == 0, ("check_report.js failed (exit %s): %s\n%s"):format(tostring(r.code), r.out, r.err))
  doc.shot = shot
  return doc
end

local function sorted_copy(t)
  local c = { table.unpack(t) }
  table.sort(c)
  return c
end

describe("the report in headless Chromium", function()
  local page
  setup(function()
    assert(os.execute("command -v chromium >/dev/null 2>&1"), "chromium is not installed: run `make browser-deps`")
    H.fresh_db()
    fixture()
    page = html.render(mv.report())
  end)

  it("loads offline, without errors, and works", function()
    local d = check(page)
    assert.are.same({}, d.errors)
    assert.are.same({}, d.requests)
    assert.are.same({}, d.dialogs)
    assert.are.equal(3, d.rows)
    assert.are.equal(3, d.scripts)
    assert.is_true(d.planted_text)            -- shown as text
    -- two charts per view, each a canvas of non-zero size
    assert.are.equal(6, #d.charts)
    for _, c in ipairs(d.charts) do assert.is_true(c[1] > 0 and c[2] > 0) end
    -- sorting by median: ascending keys, then reversed; by name again
    local keys = d.median_keys
    assert.are.same(sorted_copy(keys), keys)
    assert.are.same({ d.median_asc[3], d.median_asc[2], d.median_asc[1] }, d.median_desc)
    assert.are.same({ "rep_b", "rep_a", "rep_c" }, d.median_asc)     -- rep_c: 500 ms more each run
    assert.are.same({ "rep_a", "rep_b", "rep_c" }, d.name_asc)
    -- the filter, case-insensitive, hides the other rows and sections
    assert.are.same({ "rep_b" }, d.filtered)
    assert.are.equal(1, d.views_shown)
    assert.are.equal("1 of 3 views", d.shown)
    assert.are.equal(3, d.unfiltered)
    -- hovering the duration chart names a run
    assert.matches("^run %d+ · %a+ · %d+ ms · %d+ rows? · %d%d%d%d%-%d%d%-%d%d", d.hover)
    assert.are.equal("graphviz", d.graph.renderer)
    assert.is_true(d.graph.width > 0 and d.graph.height > 0)
    assert.are.same({ width = 1280, height = 900 }, { width = d.screenshot.width, height = d.screenshot.height })
    assert.is_true(d.screenshot.colours > 50, "blank screenshot: " .. d.screenshot.colours .. " colours")
  end)

  it("draws the graph itself where Graphviz is not used, and fits a phone in the dark", function()
    local d = check(html.render(mv.report(), { graphviz = false }), "390x844", "dark")
    assert.are.same({}, d.errors)
    assert.are.same({}, d.requests)
    assert.are.equal("page", d.graph.renderer)
    assert.is_true(d.graph.width > 0 and d.graph.height > 0)
    for _, c in ipairs(d.charts) do assert.is_true(c[1] > 0 and c[1] <= 390 and c[2] > 0) end
    assert.are.equal(390, d.screenshot.width)
  end)
end)
