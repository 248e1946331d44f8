-- `matviews report --html`: renders the data of matviews.report as one
-- self-contained HTML page. The page template, its style and its script are
-- files beside this module (lua/matviews/report/); the charting library
-- (uPlot, pinned in package.json) is read from the copy `make deps`
-- installed (node_modules/, or beside the Lua modules after `make install`)
-- and inlined. Every text from the database is HTML-escaped here; the chart
-- data goes in a JSON block the script reads with JSON.parse, and a
-- Content-Security-Policy lets only the page's own scripts (by nonce) run and
-- forbids every request.
local cjson = require "cjson"
local fmt = require "matviews.format"

local M = {}

local LIB_JS, LIB_CSS = "uPlot.iife.min.js", "uPlot.min.css"

-- The directory of this module's file (lua/matviews), or nil.
local function module_dir()
  local path = package.searchpath("matviews.report_html", package.path)
  return path and path:match("^(.*)/[^/]*$")
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The directories the charting library may be in: beside the Lua modules
-- (make install), then the source tree's node_modules (make deps).
function M.lib_dirs()
  local dir = module_dir() or "."
  return { dir .. "/report", dir .. "/../../node_modules/uplot/dist" }
end

-- The library's script and style; raises an error naming `make deps`.
function M.chart_lib(dirs)
  dirs = dirs or M.lib_dirs()
  for _, d in ipairs(dirs) do
    local js, css = read(d .. "/" .. LIB_JS), read(d .. "/" .. LIB_CSS)
    if js and css then return js, css end
  end
  require("matviews").error({ message = ("the charting library (uPlot) is not installed: run `make deps` "
    .. "in the matviews source tree (it runs npm ci), or `make install` (looked in %s)"):format(table.concat(dirs, ", ")) })
end

-- The text of template file name (report/NAME beside this module).
local function asset(name)
  local dir = module_dir() or "."
  return read(dir .. "/report/" .. name)
    or require("matviews").error({ message = "report template missing: " .. dir .. "/report/" .. name })
end

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- s as HTML text or attribute value (nil: "").
local function h(s)
  if s == nil or s == cjson.null then return "" end
  return (tostring(s):gsub("[&<>\"']", ESC))
end
M.escape = h

-- v as JSON that is safe inside a <script> element: no "<", ">", "&" and no
-- line separators that end a JavaScript string.
local function script_json(v)
  local s = require("matviews.output").encode(v)
  s = s:gsub("[<>&]", function(c) return ("\\u%04x"):format(c:byte()) end)
  return (s:gsub("\226\128\168", "\\u2028"):gsub("\226\128\169", "\\u2029"))
end

-- Text a library or template file can be inlined as inside a <script> or
-- <style> element: an end tag in it is broken up.
local function inline_safe(s)
  return (s:gsub("</([sS][cCtT])", "<\\/%1"))
end

-- "1.2 s", "340 ms", "3.5 min"; nil: "".
local function ms_text(ms)
  if ms == nil or ms == cjson.null then return "" end
  if ms < 1000 then return ("%d ms"):format(math.floor(ms + 0.5)) end
  if ms < 60000 then return ("%.1f s"):format(ms / 1000) end
  return ("%.1f min"):format(ms / 60000)
end

-- Bytes as "12.0 kB", "3.4 MB"; nil: "".
local function size_text(b) return fmt.bytes(b) or "" end

-- Seconds as "45s ago" .. "2d ago" (a clock a little ahead of the
-- server's gives 0s); nil: "never".
local function age_text(s) return fmt.age(s and math.max(0, s)) end

-- A timestamp of the one format (matviews.format) with a space for the T;
-- nil: "".
local function when(iso) return ((fmt.time(iso) or ""):gsub("^(%d+%-%d+%-%d+)T", "%1 ")) end

M.count = fmt.count -- "1 view", "3 views"

-- A period in seconds as "4 h", "1 d", "30 min".
local function period_text(s)
  if s % 86400 == 0 then return ("%d d"):format(s // 86400) end
  if s % 3600 == 0 then return ("%d h"):format(s // 3600) end
  return ("%d min"):format(s // 60)
end

local function window_text(data)
  if data.since == "all" then return "the whole history" end
  return "the last " .. h(data.since)
end

local STATUS_RANK = { failed = 0, running = 1, pending = 2, success = 3 }
local TREND = { up = { "↑", "slower than the window before", 1 }, down = { "↓", "faster than the window before", -1 },
                flat = { "→", "about as fast as the window before", 0 } }

-- A table cell with a sort key.
local function td(text, key, class)
  return ('<td data-sort="%s"%s>%s</td>'):format(h(key), class and (' class="' .. class .. '"') or "", text)
end

local function status_badge(s)
  if s == nil then return '<span class="badge">none</span>' end
  return ('<span class="badge s-%s">%s</span>'):format(h(s), h(s))
end

-- The freshness cell: its age, coloured late past the schedule's period
-- (stale past twice it).
local function fresh_cell(v)
  local class
  if v.schedule_period_s then
    local age = v.fresh_age_s
    if age == nil or age > 2 * v.schedule_period_s then class = "stale"
    elseif age > v.schedule_period_s then class = "late" else class = "ok" end
  end
  local title = v.schedule and ("schedule " .. v.schedule) or "no schedule"
  return td(('<span title="%s">%s</span>'):format(h(title), h(age_text(v.fresh_age_s))),
    v.fresh_age_s or 1e15, class and ("fresh-" .. class))
end

-- The overview table's rows.
local function overview_rows(data)
  local out = {}
  for i, v in ipairs(data.views) do
    local tr = TREND[v.trend]
    out[#out + 1] = table.concat({
      ('<tr data-view="%s">'):format(h(v.view)),
      td(('<a href="#view-%d">%s</a>'):format(i, h(v.view)), v.view),
      td(h(v.strategy) .. (v.strategy_error and (' <span class="bad" title="%s">unknown</span>'):format(h(v.strategy_error)) or ""),
        v.strategy),
      td(status_badge(v.last_status), STATUS_RANK[v.last_status] or 9),
      fresh_cell(v),
      td(h(ms_text(v.median_ms)), v.median_ms or -1, "num"),
      td(h(ms_text(v.p95_ms)), v.p95_ms or -1, "num"),
      td(tr and ('<span class="trend-%s" title="%s: median %s before">%s</span>'):format(v.trend, tr[2],
        h(ms_text(v.prev_median_ms)), tr[1]) or "", tr and tr[3] or -2),
      td(tostring(v.failures or 0), v.failures or 0, (v.failures or 0) > 0 and "num bad" or "num"),
      td(v.rows_count and tostring(v.rows_count) or "", v.rows_count or -1, "num"),
      td(h(size_text(v.size_bytes)), v.size_bytes or -1, "num"),
      "</tr>" })
  end
  return table.concat(out, "\n")
end

-- The failures section's rows.
local function failure_rows(data)
  if #data.failures == 0 then return '<tr><td colspan="6" class="muted">No failed run in the window.</td></tr>' end
  local out = {}
  for _, f in ipairs(data.failures) do
    out[#out + 1] = ("<tr><td>%s</td><td>%s</td><td><code>%s</code></td><td><pre class=\"err\">%s</pre></td>"
      .. "<td class=\"num\">%d</td><td>%s<br>%s</td></tr>"):format(h(f.view), h(f.op), h(f.sqlstate or ""),
      h(f.error or ""), f.count, h(when(f.first_at)), h(when(f.last_at)))
  end
  return table.concat(out, "\n")
end

-- The rows of one view's last runs table.
local function recent_rows(v)
  if #v.recent == 0 then return '<tr><td colspan="6" class="muted">No run recorded.</td></tr>' end
  local out = {}
  for _, r in ipairs(v.recent) do
    local err = ""
    if r.error then
      err = ('<pre class="err">%s%s</pre>'):format(r.sqlstate and ("[" .. h(r.sqlstate) .. "] ") or "", h(r.error))
      if r.error_cut then err = err .. '<p class="muted">(cut at ' .. M.MAX_ERROR_CHARS_TEXT .. ")</p>" end
    end
    out[#out + 1] = ("<tr><td>%s/%d</td><td>%s</td><td>%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td>%s</td></tr>")
      :format(h(r.op), r.id, status_badge(r.status), h(when(r.started_at or r.created_at)), h(ms_text(r.duration_ms)),
      r.rows_count and tostring(r.rows_count) or "", err)
  end
  return table.concat(out, "\n")
end
M.MAX_ERROR_CHARS_TEXT = "100,000 characters"

-- What a view's charts show, said under its title.
local function points_note(v, data)
  local p = v.points
  if p.mode == "buckets" and v.sampled then
    return ("About %s in the window (estimated from a %.0f %% sample of the history): one point per %s (average "
      .. "duration, maximum as a thin line; a red mark is the slowest sampled failure of the period)."):format(
      M.count(v.refresh_runs, "refresh run"), data.sample.fraction * 100, period_text(p.bucket_s))
  end
  if p.mode == "buckets" then
    return ("%s in the window: aggregated, one point per %s (average duration, maximum as a "
      .. "thin line; a red mark is the slowest failure of the period)."):format(M.count(v.refresh_runs, "refresh run"),
      period_text(p.bucket_s))
  end
  if #p.t == 0 then return "No finished refresh run in " .. window_text(data) .. "." end
  return ("%s in the window, one point each; failed runs in red."):format(M.count(#p.t, "refresh run"))
end

-- One view's section.
local function view_section(i, v, data)
  local meta = { h(v.strategy) .. " refresh" }
  if v.schedule then meta[#meta + 1] = "schedule <code>" .. h(v.schedule) .. "</code>" end
  meta[#meta + 1] = v.exists and (v.populated and "populated" or "not populated") or "not created"
  if v.last_status then
    meta[#meta + 1] = ("last %s %s %s"):format(h(v.last_op or "run"), status_badge(v.last_status), h(when(v.last_run_at)))
  end
  return table.concat({
    ('<article class="view" id="view-%d" data-view="%s">'):format(i, h(v.view)),
    ("<h3>%s</h3>"):format(h((v.schema and not v.view:find(".", 1, true)) and (v.schema .. "." .. v.view) or v.view)),
    v.comment and ('<p class="comment">%s</p>'):format(h(v.comment)) or "",
    ('<p class="meta">%s</p>'):format(table.concat(meta, " · ")),
    ('<p class="muted">%s</p>'):format(points_note(v, data)),
    ('<div class="charts"><figure><figcaption>Duration</figcaption><div class="chart" data-chart="duration" data-index="%d"></div>'
      .. '<p class="hover" aria-live="polite"></p></figure>'
      .. '<figure><figcaption>Rows</figcaption><div class="chart" data-chart="rows" data-index="%d"></div>'
      .. '<p class="hover" aria-live="polite"></p></figure></div>'):format(i, i),
    ('<details open><summary>Last %d runs</summary><div class="scroll"><table class="runs"><thead><tr><th>Run</th>'
      .. '<th>Status</th><th>Started</th><th>Duration</th><th>Rows</th><th>Error</th></tr></thead><tbody>%s'
      .. '</tbody></table></div></details>'):format(#v.recent, recent_rows(v)),
    ('<details><summary>SQL</summary><pre class="sql">%s</pre></details>'):format(h(v.sql)),
    "</article>" }, "\n")
end

-- Graphviz dot text of the graph with ids n1.. and names as labels, each
-- node filled with its last status's colour.
local FILL = { success = "#7fd18b", failed = "#f08a8a", running = "#f3cd6b", pending = "#c9c9c9" }
local function dot_text(data)
  local function q(s) return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"' end
  local idx = {}
  -- left to right along the edges; views that read none another side by side
  local lines = { "digraph matviews {", ("  rankdir=%s; bgcolor=\"transparent\";"):format(#data.graph.edges > 0 and "LR" or "TB"),
    '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11, color="#888888"];',
    '  edge [color="#888888"];' }
  for i, v in ipairs(data.views) do
    idx[v.view] = i
    lines[#lines + 1] = ('  n%d [label=%s, fillcolor=%s, tooltip=%s];'):format(i, q(v.view),
      q(FILL[v.last_status] or "#e0e0e0"), q(v.view .. ": " .. (v.last_status or "no run")))
  end
  for _, e in ipairs(data.graph.edges) do
    if idx[e.from] and idx[e.to] then
      lines[#lines + 1] = ("  n%d -> n%d%s;"):format(idx[e.from], idx[e.to], e.declared and " [style=dashed]" or "")
    end
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

-- True when Graphviz's dot is on PATH.
local function have_dot()
  return os.execute("command -v dot >/dev/null 2>&1") == true
end

-- The graph as inline SVG by Graphviz, or nil when dot is missing or fails.
local function dot_svg(data)
  if not have_dot() then return nil end
  -- the graph's text in a private directory, removed however dot ends
  local svg = require("matviews.files").with_scratch_dir(function(dir)
    local f = assert(io.open(dir .. "/graph.dot", "wb"))
    f:write(dot_text(data))
    f:close()
    local p = io.popen("dot -Tsvg '" .. (dir .. "/graph.dot"):gsub("'", "'\\''") .. "' 2>/dev/null", "r")
    local out = p:read("a")
    p:close()
    return out
  end)
  svg = svg and svg:match("(<svg.*</svg>)")
  if not svg then return nil end
  svg = svg:gsub("<!%-%-.-%-%->", "")
  return (svg:gsub("<svg ", '<svg role="img" aria-label="dependency graph" ', 1))
end

-- The dependency section: picture (Graphviz SVG, else drawn by the page's
-- script) and the same edges as a list.
local function graph_section(data, opts)
  local g = data.graph
  if g.error then return ('<p class="bad">The dependency graph could not be built: %s</p>'):format(h(g.error)) end
  if #data.views == 0 then return '<p class="muted">No view.</p>' end
  local svg = opts.graphviz ~= false and dot_svg(data)
  local pic = svg and ('<div class="graph" data-renderer="graphviz">' .. svg .. "</div>")
    or '<div class="graph" data-renderer="page" id="graph-canvas"></div>'
  local items = {}
  for _, e in ipairs(g.edges) do
    items[#items + 1] = ("<li>%s → %s%s</li>"):format(h(e.from), h(e.to), e.declared and " (declared)" or "")
  end
  local list = #items > 0 and ("<ul class=\"edges\">" .. table.concat(items) .. "</ul>")
    or '<p class="muted">No view reads another.</p>'
  return pic .. "\n<details" .. (svg and "" or " open") .. "><summary>As a list (upstream → downstream)</summary>"
    .. list .. "</details>"
end

-- The JSON the page's script reads: per view its name, status and points;
-- the graph for the in-page drawing.
local function chart_data(data)
  local views = {}
  for i, v in ipairs(data.views) do
    views[i] = { name = v.view, status = v.last_status, points = v.points }
  end
  return { views = views, edges = data.graph.edges or {}, order = data.graph.order or {} }
end

-- A random token for the scripts' nonce.
local function nonce()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(16) or tostring(os.time()) .. tostring({})
  if f then f:close() end
  return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- The header's sentences: generated when, which window, how big.
local function summary(data)
  local bucketed, runs = 0, 0
  for _, v in ipairs(data.views) do
    runs = runs + (v.refresh_runs or 0)
    if v.points.mode == "buckets" then bucketed = bucketed + 1 end
  end
  local s = ("Generated %s over %s: %s, %s."):format(h(when(data.generated_at)),
    window_text(data), M.count(#data.views, "view"), M.count(runs, "refresh run"))
  if bucketed > 0 then
    s = s .. (" %d %s more than %d refresh runs in the window: %s aggregated per time period.")
      :format(bucketed, bucketed == 1 and "view has" or "views have", data.limits.view_points,
        bucketed == 1 and "its chart is" or "their charts are")
  end
  if data.sample then
    local n = 0
    for _, v in ipairs(data.views) do if v.sampled then n = n + 1 end end
    if n > 0 then
      s = s .. (" The refresh history holds about %s: the durations and charts of %s come from a %.0f %% sample of "
        .. "it (their run counts are estimates); failures and last runs are exact."):format(
        M.count(data.sample.history_runs, "run"), M.count(n, "view"), data.sample.fraction * 100)
    end
  end
  if data.failures_cut then
    s = s .. (" Only the %d most frequent failure groups are listed."):format(data.limits.max_failure_groups)
  end
  return s
end

-- The whole page for data (matviews.report.data). opts.lib_dirs: where
-- the charting library is; opts.graphviz = false: draw the graph in the
-- page even where dot is installed.
function M.render(data, opts)
  opts = opts or {}
  local js, css = M.chart_lib(opts.lib_dirs)
  local n = nonce()
  local parts = {
    nonce = n,
    title = "matviews report",
    lib_css = inline_safe(css),
    page_css = inline_safe(asset("page.css")),
    summary = summary(data),
    overview = overview_rows(data),
    view_count = tostring(#data.views),
    failures = failure_rows(data),
    graph = graph_section(data, opts),
    views = (function()
      local out = {}
      for i, v in ipairs(data.views) do out[i] = view_section(i, v, data) end
      return table.concat(out, "\n")
    end)(),
    data = script_json(chart_data(data)),
    lib_js = inline_safe(js),
    page_js = inline_safe(asset("page.js")),
  }
  return (asset("page.html"):gsub("{{([%w_]+)}}", function(k)
    return parts[k] or error("report template: unknown placeholder " .. k)
  end))
end

return M
