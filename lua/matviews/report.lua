-- The data of `matviews report`: per view its definition, last run,
-- freshness against its schedule, duration percentiles of the window and of
-- the window before it (the trend), the points of its charts, its last runs
-- with their errors in full; the failures of the window grouped by view and
-- error; the dependency graph. mv.report{} returns it as a Lua table and
-- matviews.report_html renders it.
--
-- Size is bounded whatever the history holds: the chart points of a report
-- are at most MAX_POINTS (shared among the views, at most
-- MAX_VIEW_POINTS each); a view with more refresh runs in the window gets
-- one point per time bucket (run count, average and maximum duration,
-- failures), and says so (`points.mode = "buckets"`). On a history of more
-- than SAMPLE_ROWS refresh runs the durations and the charts of the views
-- with many runs come from a block sample of about SAMPLE_ROWS runs
-- (`sampled`, `sample`: run counts are then estimates); the failures, the
-- last runs and everything else are exact.
local cjson = require "cjson"
local catalog = require "matviews.catalog"
local vocab = require "matviews.vocab"
local targets = require "matviews.targets"
local reports = require "matviews.reports"

local M = {}

M.DEFAULT_SINCE = "30d"
M.MAX_POINTS = 50000     -- chart points in one report, all views together
M.MAX_VIEW_POINTS = 1000 -- chart points of one view
M.MIN_VIEW_POINTS = 100  -- however many views there are
M.RECENT = 20            -- last runs listed per view
M.MAX_FAILURE_GROUPS = 500
M.MAX_ERROR_CHARS = 100000
M.SAMPLE_ROWS = 200000   -- refresh runs the statistics read, past which they read a sample

local null = cjson.null
local TABLES, OPS = catalog.RUN_TABLES, catalog.OPS
local iso = reports.iso

-- Definition text, size and the rows of the latest successful refresh of
-- each view of the bigint[] $1.
local DEFS_SQL = vocab.sql[[
SELECT d.id, d.sql, d.comment,
  CASE WHEN c.oid IS NULL THEN NULL ELSE pg_total_relation_size(c.oid) END AS size_bytes,
  (SELECT r.rows_count FROM {refresh_runs} r WHERE r.mat_view_definition_id = d.id AND r.status = {success}
    ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS rows_count
FROM mat_view_definitions d
LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(d.schema_name) || '.' || quote_ident(d.name)) AND c.relkind = 'm'
WHERE d.id = ANY ($1::bigint[])]]

-- Refresh duration percentiles (successful runs) and counts, per view, of
-- the window (cur) and the window of the same length before it.
local AGG_SQL = vocab.sql[[
SELECT a.id, a.cur, a.runs, a.failed, a.pct[1] AS median_ms, a.pct[2] AS p95_ms FROM (
  SELECT r.mat_view_definition_id AS id, %s AS cur,
    count(*) AS runs, count(*) FILTER (WHERE r.status = {failed}) AS failed,
    percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY r.duration_ms) FILTER (WHERE r.status = {success}) AS pct
  FROM %s
  WHERE r.mat_view_definition_id = ANY ($1::bigint[]) AND r.status IN ({success}, {failed}) AND %s
  GROUP BY 1, 2) a]]

-- One point per refresh run of the views of $1 within the window.
local RAW_SQL = vocab.sql[[
SELECT r.mat_view_definition_id AS view_id, r.id, r.status, r.duration_ms, r.rows_count,
  floor(extract(epoch FROM coalesce(r.finished_at, r.created_at)))::bigint AS t
FROM {refresh_runs} r
WHERE r.mat_view_definition_id = ANY ($1::bigint[]) AND r.status IN ({success}, {failed}) AND %s
ORDER BY r.mat_view_definition_id, r.created_at, r.id]]

-- One point per time bucket of the window for the views of $1 ($2: the
-- buckets' width in seconds; %s the window condition).
local BUCKET_SQL = vocab.sql[[
SELECT r.mat_view_definition_id AS view_id,
  (floor(date_part('epoch', r.created_at) / $2::int) * $2::int)::bigint AS t, count(*) AS n,
  round(avg(r.duration_ms) FILTER (WHERE r.status = {success}))::bigint AS avg_ms,
  max(r.duration_ms) FILTER (WHERE r.status = {success}) AS max_ms,
  count(*) FILTER (WHERE r.status = {failed}) AS failed,
  max(r.duration_ms) FILTER (WHERE r.status = {failed}) AS failed_ms,
  max(r.rows_count) AS rows_count
FROM %s
WHERE r.mat_view_definition_id = ANY ($1::bigint[]) AND r.status IN ({success}, {failed}) AND %s
GROUP BY 1, 2 ORDER BY 1, 2]]

-- The SELECT of one run table for the recent runs of view v.id.
local function recent_branch(op)
  return ([[(SELECT '%s' AS op, r.id, r.status, %s AS started_at, %s AS finished_at, r.duration_ms,
      %s AS rows_count, left(r.error, %d) AS error, length(r.error) AS error_length,
      r.meta -> 'error' ->> 'sqlstate' AS sqlstate, r.created_at
    FROM %s r WHERE r.mat_view_definition_id = v.id ORDER BY r.created_at DESC, r.id DESC LIMIT %d)]]):format(
    op, iso("r.started_at"), iso("r.finished_at"), op == "refresh" and "r.rows_count" or "NULL::integer",
    M.MAX_ERROR_CHARS, TABLES[op], M.RECENT)
end

-- The SELECT of one run table for the failures of the window.
local function failure_branch(op, window)
  return vocab.sql([[SELECT '%s' AS op, r.mat_view_definition_id AS view_id, r.error,
      r.meta -> 'error' ->> 'sqlstate' AS sqlstate, r.created_at
    FROM %s r WHERE r.mat_view_definition_id = ANY ($1::bigint[]) AND r.status = {failed} AND %s]]):format(
    op, TABLES[op], window)
end

-- SQL condition: run r was created within the last secs * factor seconds
-- (secs: an integer, written into the SQL; nil: always true).
local function window_sql(secs, factor)
  if not secs then return "true" end
  return ("r.created_at >= now() - make_interval(secs => %d)"):format(math.tointeger(secs * (factor or 1)))
end

-- "{1,2,3}": a bigint[] parameter.
local function id_array(ids)
  local s = {}
  for i, id in ipairs(ids) do s[i] = tostring(math.tointeger(id)) end
  return "{" .. table.concat(s, ",") .. "}"
end

local function nn(v) if v == null then return nil end return v end

-- Seconds between two consecutive fire times of the cron expression
-- after `now` (nil when it has none or is invalid).
local function schedule_period(expr, now, zone)
  if expr == nil or expr == null or expr == "" then return nil end
  local core = require("matviews.core")
  local ok, a = pcall(core.cron_next, expr, now, zone)
  if not ok or not a then return nil end
  local ok2, b = pcall(core.cron_next, expr, a, zone)
  if not ok2 or not b then return nil end
  return b - a
end

-- The definitions the report covers (all, or those of opts.views), from
-- the data of `matviews list`.
local function select_views(conn, names)
  local rows = reports.list({ conn = conn })
  if not names or #names == 0 then return rows end
  local want = {}
  for _, n in ipairs(names) do want[targets.resolve_one(conn, n).id] = true end
  local out = {}
  for _, r in ipairs(rows) do if want[r.id] then out[#out + 1] = r end end
  return out
end

-- Adds sql, comment, size_bytes and rows_count to each view.
local function add_definitions(conn, views, ids)
  local by_id = {}
  for _, r in ipairs(targets.query(conn, DEFS_SQL, id_array(ids))) do by_id[r.id] = r end
  for _, v in ipairs(views) do
    local d = by_id[v.id] or {}
    v.sql, v.comment, v.size_bytes, v.rows_count = d.sql, nn(d.comment), nn(d.size_bytes), nn(d.rows_count)
  end
end

-- "up" (slower by more than 10 %), "down" (faster by more than 10 %),
-- "flat", or nil when either median is unknown.
local function trend(cur, prev)
  if not cur or not prev or prev <= 0 then return nil end
  if cur > prev * 1.1 then return "up" end
  if cur < prev / 1.1 then return "down" end
  return "flat"
end

-- Budget of chart points per view.
local function view_budget(n)
  if n == 0 then return M.MAX_VIEW_POINTS end
  return math.max(M.MIN_VIEW_POINTS, math.min(M.MAX_VIEW_POINTS, M.MAX_POINTS // n))
end

-- The refresh run table in a FROM clause: whole, or a block sample of
-- `fraction` of it (the same sample for the same table).
local function refresh_from(fraction)
  if not fraction then return TABLES.refresh .. " r" end
  return (TABLES.refresh .. " r TABLESAMPLE SYSTEM (%.6f) REPEATABLE (7)"):format(fraction * 100)
end

-- The fraction of the refresh history the statistics read: nil (all of
-- it) up to M.SAMPLE_ROWS runs (the planner's estimate), else about
-- M.SAMPLE_ROWS of them.
local function sample_fraction(conn)
  local n = conn:query("SELECT reltuples::bigint AS n FROM pg_class WHERE oid = $1::regclass", TABLES.refresh)[1].n
  if n <= M.SAMPLE_ROWS then return nil, n end
  return M.SAMPLE_ROWS / n, n
end

-- Sets the window's figures of the views of ids from AGG_SQL over `from`:
-- refresh_runs, refresh_failed, median_ms, p95_ms, prev_median_ms, trend;
-- counts divided by fraction (an estimate) when from is a sample.
local function aggregate(conn, by_id, ids, secs, fraction)
  if #ids == 0 then return end
  local sql = AGG_SQL:format(window_sql(secs), refresh_from(fraction), window_sql(secs, 2))
  local got = {}
  for _, r in ipairs(targets.query(conn, sql, id_array(ids))) do
    got[r.id] = got[r.id] or {}
    -- without a window every run is in it (cur is then always true)
    got[r.id][(r.cur or not secs) and "cur" or "prev"] = r
  end
  for _, id in ipairs(ids) do
    local v, a = by_id[id], got[id] or {}
    local cur, prev = a.cur or {}, a.prev or {}
    local scale = fraction and (1 / fraction) or 1
    v.refresh_runs = math.floor((cur.runs or 0) * scale + 0.5)
    v.refresh_failed = math.floor((cur.failed or 0) * scale + 0.5)
    v.median_ms, v.p95_ms, v.prev_median_ms = nn(cur.median_ms), nn(cur.p95_ms), nn(prev.median_ms)
    v.trend = trend(v.median_ms, v.prev_median_ms)
    v.sampled = fraction and true or nil
  end
end

-- Adds the window's figures to each view (see aggregate). On a long
-- history a block sample is read first; the views it puts within their
-- points budget (or does not see) are then read whole, through the
-- (definition, created_at) index: what is read stays bounded.
local function add_aggregates(conn, views, ids, secs, fraction)
  local by_id = {}
  for _, v in ipairs(views) do by_id[v.id] = v end
  if not fraction then return aggregate(conn, by_id, ids, secs) end
  aggregate(conn, by_id, ids, secs, fraction)
  local exact, budget = {}, view_budget(#views)
  for _, v in ipairs(views) do
    if v.refresh_runs <= budget then exact[#exact + 1] = v.id end
  end
  aggregate(conn, by_id, exact, secs)
end

-- Adds `points` to each view: the refresh runs of the window, each one
-- (mode "runs": t, id, status, ms, rows) or per time bucket (mode
-- "buckets": t, n, avg_ms, max_ms, failed, failed_ms, rows, bucket_s; from
-- the sample for a sampled view, n then estimated).
local function add_points(conn, views, secs, window_s, fraction)
  local budget = view_budget(#views)
  local raw, bucketed, sampled = {}, {}, {}
  for _, v in ipairs(views) do
    if v.sampled then sampled[#sampled + 1] = v.id
    elseif v.refresh_runs <= budget then raw[#raw + 1] = v.id
    else bucketed[#bucketed + 1] = v.id end
  end
  local by_id = {}
  for _, v in ipairs(views) do by_id[v.id] = v end
  local function cols(v, mode, extra)
    v.points = { mode = mode, t = {}, ms = {}, rows = {} }
    for k, val in pairs(extra or {}) do v.points[k] = val end
    return v.points
  end
  for _, v in ipairs(views) do cols(v, "runs", { id = {}, status = {} }) end
  if #raw > 0 then
    for _, r in ipairs(targets.query(conn, RAW_SQL:format(window_sql(secs)), id_array(raw))) do
      local p = by_id[r.view_id].points
      local i = #p.t + 1
      p.t[i], p.id[i], p.status[i] = r.t, r.id, catalog.STATUS[r.status]
      p.ms[i], p.rows[i] = r.duration_ms, r.rows_count
    end
  end
  -- buckets of whole minutes, budget of them over the window
  local width = math.max(60, math.ceil(window_s / budget / 60) * 60)
  for _, set in ipairs({ { bucketed }, { sampled, fraction } }) do
    local ids, frac = set[1], set[2]
    for _, id in ipairs(ids) do
      cols(by_id[id], "buckets", { n = {}, max_ms = {}, failed = {}, failed_ms = {}, bucket_s = width })
    end
    local scale = frac and (1 / frac) or 1
    local sql = BUCKET_SQL:format(refresh_from(frac), window_sql(secs))
    for _, r in ipairs(#ids > 0 and targets.query(conn, sql, id_array(ids), width) or {}) do
      local p = by_id[r.view_id].points
      local i = #p.t + 1
      p.t[i], p.n[i], p.ms[i], p.max_ms[i] = r.t, math.floor(r.n * scale + 0.5), r.avg_ms, r.max_ms
      p.failed[i], p.failed_ms[i], p.rows[i] = math.floor(r.failed * scale + 0.5), r.failed_ms, r.rows_count
    end
  end
end

-- Adds `recent`: the last M.RECENT runs of every op, newest first.
local function add_recent(conn, views, ids)
  local branches = {}
  for _, op in ipairs(OPS) do branches[#branches + 1] = recent_branch(op) end
  local sql = ([[SELECT v.id AS view_id, x.op, x.id, x.status, x.started_at, x.finished_at, x.duration_ms,
      x.rows_count, x.error, x.error_length, x.sqlstate, %s AS created_at
    FROM unnest($1::bigint[]) AS v(id) CROSS JOIN LATERAL (SELECT * FROM (%s) u
      ORDER BY u.created_at DESC, u.id DESC LIMIT %d) x
    ORDER BY v.id, x.created_at DESC, x.id DESC]]):format(iso("x.created_at"),
    table.concat(branches, "\nUNION ALL\n"), M.RECENT)
  local by_id = {}
  for _, v in ipairs(views) do v.recent = {}; by_id[v.id] = v end
  for _, r in ipairs(targets.query(conn, sql, id_array(ids))) do
    local list = by_id[r.view_id].recent
    r.view_id = nil
    r.status = catalog.STATUS[r.status] or tostring(r.status)
    r.error_cut = r.error_length ~= null and r.error_length > M.MAX_ERROR_CHARS or nil
    r.error_length = nil
    for k, val in pairs(r) do if val == null then r[k] = nil end end
    list[#list + 1] = r
  end
end

-- The failures of the window, grouped by view, op, SQLSTATE and message:
-- count, first and last occurrence; most frequent first within a view.
local function failures(conn, views, ids, secs)
  local branches = {}
  for _, op in ipairs(OPS) do branches[#branches + 1] = failure_branch(op, window_sql(secs)) end
  local sql = ([[SELECT f.view_id, f.op, f.sqlstate, left(f.error, %d) AS error, count(*) AS count,
      %s AS first_at, %s AS last_at
    FROM (%s) f GROUP BY 1, 2, 3, 4 ORDER BY 1, count(*) DESC, max(f.created_at) DESC LIMIT %d]]):format(
    M.MAX_ERROR_CHARS, iso("min(f.created_at)"), iso("max(f.created_at)"),
    table.concat(branches, "\nUNION ALL\n"), M.MAX_FAILURE_GROUPS + 1)
  local rows = targets.query(conn, sql, id_array(ids))
  local names, count = {}, {}
  for _, v in ipairs(views) do names[v.id] = v.view; count[v.id] = 0 end
  local out = {}
  for i, r in ipairs(rows) do
    if i > M.MAX_FAILURE_GROUPS then break end
    out[i] = { view = names[r.view_id], op = r.op, sqlstate = nn(r.sqlstate), error = nn(r.error),
      count = r.count, first_at = r.first_at, last_at = r.last_at }
    count[r.view_id] = count[r.view_id] + r.count
  end
  table.sort(out, function(a, b)
    if a.view ~= b.view then return a.view < b.view end
    if a.count ~= b.count then return a.count > b.count end
    return a.last_at > b.last_at
  end)
  for _, v in ipairs(views) do v.failures = count[v.id] end
  return out, #rows > M.MAX_FAILURE_GROUPS
end

-- The dependency graph among the report's views: { edges = { {from, to,
-- declared} }, order = { names } } or { error = message }.
local function graph(conn, views)
  local deps = require "matviews.deps"
  local ok, g = pcall(deps.load, conn)
  if not ok then return { error = require("matviews.output").error_text(g), edges = {}, order = {} } end
  local set = {}
  for _, v in ipairs(views) do if g.nodes[v.view] then set[v.view] = true end end
  local edges = {}
  for _, e in ipairs(deps.edges(g, set)) do
    edges[#edges + 1] = { from = e.from, to = e.to, declared = (#e.sources == 1 and e.sources[1] == "declared") }
  end
  return { edges = edges, order = deps.order(g, set) }
end

-- mv.report{ since = "30d" | seconds | "all", views = { NAME... }, conn }:
-- { generated_at, now (epoch s), since, window_s, views = { ... },
--   failures = { ... }, failures_cut, graph = { edges, order }, limits }.
-- Each view: id, view, schema, strategy, schedule, schedule_period_s,
-- exists, populated, last_op, last_status, last_run_at, fresh_at,
-- fresh_age_s, overdue, sql, comment, size_bytes, rows_count, refresh_runs,
-- refresh_failed, failures (all ops), median_ms, p95_ms, prev_median_ms,
-- trend, sampled, points, recent. `sample` = { fraction, history_runs }
-- when the statistics read a sample.
function M.data(opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  local since = opts.since or M.DEFAULT_SINCE
  local secs
  if since ~= "all" and since ~= false then
    if math.type(since) == "integer" and since > 0 then secs = since
    else
      local err
      secs, err = reports.parse_duration(since)
      if not secs then targets.usage(err) end
    end
  end
  local views = select_views(conn, opts.views)
  local now = conn:query("SELECT floor(extract(epoch FROM now()))::bigint AS t, " .. iso("now()") .. " AS at")[1]
  local ids = {}
  for i, v in ipairs(views) do ids[i] = v.id end
  add_definitions(conn, views, ids)
  local fraction, history = sample_fraction(conn)
  add_aggregates(conn, views, ids, secs, fraction)
  local window_s = secs
  if not window_s then
    local first = conn:query([[SELECT floor(extract(epoch FROM now() - min(created_at)))::bigint AS s
      FROM ]] .. TABLES.refresh .. [[ WHERE mat_view_definition_id = ANY ($1::bigint[])]], id_array(ids))[1].s
    window_s = math.max(60, nn(first) or 60)
  end
  add_points(conn, views, secs, window_s, fraction)
  add_recent(conn, views, ids)
  local fails, cut = failures(conn, views, ids, secs)
  local zone = (pcall(mv.config) and mv.config().time_zone) or nil
  for _, v in ipairs(views) do
    for k, val in pairs(v) do if val == null then v[k] = nil end end
    v.schedule_period_s = schedule_period(v.schedule, now.t, zone)
    v.overdue = v.schedule_period_s ~= nil and (v.fresh_age_s == nil or v.fresh_age_s > v.schedule_period_s) or nil
  end
  return {
    generated_at = now.at, now = now.t, since = secs and since or "all", window_s = window_s,
    views = views, failures = fails, failures_cut = cut or nil, graph = graph(conn, views),
    sample = fraction and { fraction = fraction, history_runs = history } or nil,
    limits = { sample_rows = M.SAMPLE_ROWS, max_points = M.MAX_POINTS, view_points = view_budget(#views), recent = M.RECENT,
               max_failure_groups = M.MAX_FAILURE_GROUPS, max_error_chars = M.MAX_ERROR_CHARS },
  }
end

return M
