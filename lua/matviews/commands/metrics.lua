-- `matviews metrics`: the runs as Prometheus text exposition (format 0.0.4)
-- for node_exporter's textfile collector, e.g.
--   matviews metrics > /var/lib/node_exporter/matviews.prom.$$ && mv ... .prom
-- With --json, the same figures as one JSON document.
local output = require "matviews.output"
local reports = require "matviews.reports"

local M = {
  name = "metrics",
  summary = "Print run metrics in Prometheus text format (textfile collector).",
}

-- The metric families, in output order: name, type, help.
local FAMILIES = {
  { "matviews_runs_total", "counter", "Runs recorded in the run tables, by view, operation and status." },
  { "matviews_failures_total", "counter", "Failed runs of the view, all operations." },
  { "matviews_last_success_timestamp_seconds", "gauge", "Unix time the latest successful run of the operation finished." },
  { "matviews_last_duration_seconds", "gauge", "Duration of the latest finished run of the operation." },
}

-- A label value escaped for the exposition format.
local function esc(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

-- One sample line: name{k="v",...} value.
local function sample(name, labels, value)
  local parts = {}
  for _, kv in ipairs(labels) do parts[#parts + 1] = ('%s="%s"'):format(kv[1], esc(kv[2])) end
  local v = math.type(value) == "integer" and tostring(value) or ("%.15g"):format(value)
  if tonumber(v) ~= value then v = ("%.17g"):format(value) end
  return ("%s{%s} %s\n"):format(name, table.concat(parts, ","), v)
end

-- The samples of every family from the rows of reports.metrics_data.
local function samples(rows)
  local s = { matviews_runs_total = {}, matviews_failures_total = {},
    matviews_last_success_timestamp_seconds = {}, matviews_last_duration_seconds = {} }
  local failures, order = {}, {}
  for _, r in ipairs(rows) do
    if failures[r.view] == nil then failures[r.view] = 0; order[#order + 1] = r.view end
    if r.status ~= output.null then
      table.insert(s.matviews_runs_total,
        sample("matviews_runs_total", { { "view", r.view }, { "op", r.op }, { "status", r.status } }, r.n))
      if r.status == "failed" then failures[r.view] = failures[r.view] + r.n end
    else
      if r.last_success ~= output.null then
        table.insert(s.matviews_last_success_timestamp_seconds, sample("matviews_last_success_timestamp_seconds",
          { { "view", r.view }, { "op", r.op } }, r.last_success))
      end
      if r.last_duration_ms ~= output.null then
        table.insert(s.matviews_last_duration_seconds, sample("matviews_last_duration_seconds",
          { { "view", r.view }, { "op", r.op } }, r.last_duration_ms / 1000))
      end
    end
  end
  for _, v in ipairs(order) do
    table.insert(s.matviews_failures_total, sample("matviews_failures_total", { { "view", v } }, failures[v]))
  end
  return s
end

-- The whole exposition text for rows.
function M.render(rows)
  local s, buf = samples(rows), {}
  for _, f in ipairs(FAMILIES) do
    buf[#buf + 1] = ("# HELP %s %s\n# TYPE %s %s\n"):format(f[1], f[3], f[1], f[2])
    buf[#buf + 1] = table.concat(s[f[1]])
  end
  return table.concat(buf)
end

function M.run(_, ctx)
  local rows = reports.metrics_data()
  output.emit(ctx, output.array(rows), function(list) io.write(M.render(list)) end)
  return 0
end

return M
