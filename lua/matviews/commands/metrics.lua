-- `matviews metrics [--listen ADDR]`: Prometheus text exposition (format
-- 0.0.4) for node_exporter's textfile collector, e.g.
--   matviews metrics > /var/lib/node_exporter/matviews.prom.$$ && mv ... .prom
-- or, with --listen 127.0.0.1:9187, served over HTTP at /metrics for a
-- scraper (matviews.http: GET only, bounded requests, localhost by default).
-- Counters come from matviews_run_counters, which a trigger moves in the
-- transaction that finalises each run, so they never go down when `prune`
-- deletes history. With --json, the same figures as one JSON document.
local output = require "matviews.output"
local reports = require "matviews.reports"

local M = {
  name = "metrics",
  summary = "Print (or serve over HTTP) run and view metrics in Prometheus text format.",
}

function M.configure(cmd)
  cmd:option("--listen", "Serve /metrics over HTTP on [HOST:]PORT (e.g. 9187: 127.0.0.1 unless a host is given).")
  cmd:option("--request-timeout-ms", "How long a client may take to send its request.", "5000")
    :convert(require("matviews.format").positive_integer)
end

-- The metric families, in output order: name, type, help.
local FAMILIES = {
  { "matviews_up", "gauge", "1 when matviews could read its catalog, else 0." },
  { "matviews_runs_total", "counter", "Finished runs by view, operation and status (kept through prune)." },
  { "matviews_failures_total", "counter", "Failed runs of the view, all operations (kept through prune)." },
  { "matviews_run_duration_seconds", "histogram", "Durations of finished runs by view and operation." },
  { "matviews_last_success_timestamp_seconds", "gauge", "Unix time the latest successful run of the operation finished." },
  { "matviews_last_duration_seconds", "gauge", "Duration of the latest finished run of the operation." },
  { "matviews_view_staleness_seconds", "gauge", "Seconds since the start of the latest successful run that filled the view." },
  { "matviews_view_rows", "gauge", "Rows of the view as its latest run counted them." },
  { "matviews_view_size_bytes", "gauge", "pg_total_relation_size of the view." },
  { "matviews_queue_jobs", "gauge", "Jobs of the queue by status." },
}

-- A label value escaped for the exposition format.
local function esc(v)
  return (tostring(v):gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

-- A number as the exposition writes it (integers bare, others round-trip).
local function num(value)
  if value == math.huge then return "+Inf" end
  local v = math.type(value) == "integer" and tostring(value) or ("%.15g"):format(value)
  if tonumber(v) ~= value then v = ("%.17g"):format(value) end
  return v
end

-- One sample line: name{k="v",...} value (no braces without labels).
local function sample(name, labels, value)
  local parts = {}
  for _, kv in ipairs(labels) do parts[#parts + 1] = ('%s="%s"'):format(kv[1], esc(kv[2])) end
  local l = #parts > 0 and ("{" .. table.concat(parts, ",") .. "}") or ""
  return ("%s%s %s\n"):format(name, l, num(value))
end

local function present(v) return v ~= nil and v ~= output.null end

-- The histogram samples of one view and op from its counter rows.
local function histogram(out, view, op, h, bounds)
  local cum = 0
  for i, b in ipairs(bounds) do
    cum = cum + (h.buckets[i] or 0)
    out[#out + 1] = sample("matviews_run_duration_seconds_bucket", { { "view", view }, { "op", op }, { "le", num(b) } }, cum)
  end
  cum = cum + (h.buckets[#bounds + 1] or 0)
  out[#out + 1] = sample("matviews_run_duration_seconds_bucket", { { "view", view }, { "op", op }, { "le", "+Inf" } }, cum)
  out[#out + 1] = sample("matviews_run_duration_seconds_sum", { { "view", view }, { "op", op } }, h.sum_ms / 1000)
  out[#out + 1] = sample("matviews_run_duration_seconds_count", { { "view", view }, { "op", op } }, cum)
end

-- The samples of every family from d = reports.metrics_data().
local function samples(d)
  local s = {}
  for _, f in ipairs(FAMILIES) do s[f[1]] = {} end
  table.insert(s.matviews_up, sample("matviews_up", {}, d.up))
  local failures, order, hist, horder = {}, {}, {}, {}
  for _, v in ipairs(d.views or {}) do failures[v.view] = 0; order[#order + 1] = v.view end
  for _, c in ipairs(d.counters or {}) do
    table.insert(s.matviews_runs_total, sample("matviews_runs_total",
      { { "view", c.view }, { "op", c.op }, { "status", c.status } }, c.runs))
    if c.status == "failed" then
      if failures[c.view] == nil then failures[c.view] = 0; order[#order + 1] = c.view end
      failures[c.view] = failures[c.view] + c.runs
    end
    local key = c.view .. "\0" .. c.op
    local h = hist[key]
    if not h then h = { view = c.view, op = c.op, buckets = {}, sum_ms = 0 }; hist[key] = h; horder[#horder + 1] = h end
    h.sum_ms = h.sum_ms + (c.duration_ms_sum or 0)
    for i, n in ipairs(c.buckets or {}) do h.buckets[i] = (h.buckets[i] or 0) + n end
  end
  for _, v in ipairs(order) do
    table.insert(s.matviews_failures_total, sample("matviews_failures_total", { { "view", v } }, failures[v]))
  end
  for _, h in ipairs(horder) do histogram(s.matviews_run_duration_seconds, h.view, h.op, h, d.buckets) end
  for _, r in ipairs(d.last or {}) do
    local labels = { { "view", r.view }, { "op", r.op } }
    if present(r.last_success) then
      table.insert(s.matviews_last_success_timestamp_seconds, sample("matviews_last_success_timestamp_seconds", labels, r.last_success))
    end
    if present(r.last_duration_ms) then
      table.insert(s.matviews_last_duration_seconds, sample("matviews_last_duration_seconds", labels, r.last_duration_ms / 1000))
    end
  end
  for _, v in ipairs(d.views or {}) do
    local labels = { { "view", v.view } }
    if present(v.staleness_s) then table.insert(s.matviews_view_staleness_seconds, sample("matviews_view_staleness_seconds", labels, v.staleness_s)) end
    if present(v.rows) then table.insert(s.matviews_view_rows, sample("matviews_view_rows", labels, v.rows)) end
    if present(v.size_bytes) then table.insert(s.matviews_view_size_bytes, sample("matviews_view_size_bytes", labels, v.size_bytes)) end
  end
  local statuses = {}
  for k in pairs(d.queue or {}) do statuses[#statuses + 1] = k end
  table.sort(statuses)
  for _, st in ipairs(statuses) do
    table.insert(s.matviews_queue_jobs, sample("matviews_queue_jobs", { { "status", st } }, d.queue[st]))
  end
  return s
end

-- The whole exposition text for d (reports.metrics_data's document).
function M.render(d)
  local s, buf = samples(d), {}
  for _, f in ipairs(FAMILIES) do
    buf[#buf + 1] = ("# HELP %s %s\n# TYPE %s %s\n"):format(f[1], f[3], f[1], f[2])
    buf[#buf + 1] = table.concat(s[f[1]])
  end
  return table.concat(buf)
end

-- The current figures; { up = 0, error } when the database cannot be read.
function M.collect()
  local ok, d = pcall(reports.metrics_data)
  if ok then d.up = 1; return d end
  return { up = 0, error = output.error_text(d) }
end

function M.run(args, ctx)
  if args.listen then
    return require("matviews.http").serve(args.listen, function()
      return M.render(M.collect())
    end, ctx, { timeout_ms = args.request_timeout_ms })
  end
  local d = M.collect()
  output.emit(ctx, d, function(doc) io.write(M.render(doc)) end)
  if d.error then io.stderr:write("matviews: ", d.error, "\n"); return 1 end
  return 0
end

return M
