-- Reports over the run tables, computed in the database: mv.runs (newest
-- runs across the three run tables, orphans marked), mv.stats (duration
-- statistics, failures, freshness and the slow flag per view), the data of
-- `matviews list` and `matviews metrics`. Every query filters and orders on
-- (mat_view_definition_id, created_at) so it stays index-driven on large
-- run tables; only formatting happens in Lua.
local cjson = require "cjson"
local targets = require "matviews.targets"
local STRATEGY_NAMES = require("matviews.definitions").STRATEGY_NAMES
local LABEL = require("matviews.definitions").label_sql("d") -- how views are named

local M = {}

local catalog = require "matviews.catalog"
local vocab = require "matviews.vocab"
local TABLES, OPS = catalog.RUN_TABLES, catalog.OPS

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

-- "90s", "30m", "24h", "7d", "2w", "1h30m" -> seconds; nil, message otherwise.
function M.parse_duration(s)
  local bad = ("invalid duration %q: use a number and a unit s, m, h, d or w (e.g. 90s, 30m, 24h, 7d)"):format(tostring(s))
  if type(s) ~= "string" or s == "" then return nil, bad end
  local total, rest = 0, s
  while rest ~= "" do
    local n, u, tail = rest:match("^(%d+)([smhdw])(.*)$")
    if not n then return nil, bad end
    total, rest = total + tonumber(n) * UNIT[u], tail
  end
  -- now() minus more than this leaves PostgreSQL's timestamp range (22008)
  if total > M.MAX_DURATION_S then
    return nil, ("invalid duration %q: at most 1000 years (use all for the whole history)"):format(s)
  end
  return math.tointeger(total) or total
end
M.MAX_DURATION_S = 1000 * 36525 * 864 -- 1000 years of 365.25 days

-- The window mv.stats aggregates over when no `since` is given: the run
-- history grows without bound, the last week of it stays small enough to
-- aggregate at once (p95 sorts every run it covers).
M.STATS_SINCE = "7d"

-- since (a duration string, seconds, or "all"/false: no bound) -> seconds or
-- nil; raises a usage error.
local function since_seconds(since)
  if since == nil or since == false or since == "all" then return nil end
  if math.type(since) == "integer" and since >= 0 then return since end
  local secs, err = M.parse_duration(since)
  if not secs then targets.usage(err) end
  return secs
end

-- SQL text of a timestamptz column in the one format (matviews.format).
local iso = require("matviews.format").iso_sql
M.iso = iso

local function conn_of(opts) return opts and opts.conn or require("matviews").conn() end

-- The definition id a `view` option names (nil: every view).
local function view_id(conn, view)
  if view == nil then return nil end
  return targets.resolve_one(conn, view).id
end

-- Adds `$n` parameter v to params and returns its placeholder.
local function param(params, v)
  params[#params + 1] = v
  return "$" .. #params
end

-- SQL condition: the run aliased `alias` is orphaned (see matviews.jobs).
local function orphaned_sql(alias) return require("matviews.jobs").orphaned_sql(alias) end

-- The SELECT of one run table for mv.runs, with its filters.
local function runs_branch(op, f, params)
  local where = {}
  if f.id then where[#where + 1] = "r.mat_view_definition_id = " .. param(params, f.id) end
  if f.status then where[#where + 1] = "r.status = " .. param(params, f.status) end
  if f.since then
    where[#where + 1] = "r.created_at >= now() - make_interval(secs => " .. param(params, f.since) .. ")"
  end
  if f.orphaned then where[#where + 1] = orphaned_sql("r") end
  return ([[(SELECT '%s' AS op, r.id, r.mat_view_definition_id, r.status, r.started_at, r.finished_at,
      r.duration_ms, %s AS rows_count, r.error, r.meta, r.backend_pid, r.hostname, r.process_pid, r.created_at
    FROM %s r %s ORDER BY r.created_at DESC, r.id DESC LIMIT %s)]]):format(op,
    op == "refresh" and "r.rows_count" or "NULL::integer", TABLES[op],
    #where > 0 and ("WHERE " .. table.concat(where, " AND ")) or "", f.limit_param)
end

-- mv.runs{ view, op, status, since, limit, conn }: runs newest first across
-- the run tables; status may also be "orphaned" (running, its recorder
-- backend gone: the condition of matviews.jobs, which reconcile finalises).
-- Each run: id, op, view, definition_id, status, orphaned, started_at,
-- finished_at, duration_ms, rows_count, error, meta (table), backend_pid,
-- hostname, process_pid, created_at.
function M.runs(opts)
  opts = opts or {}
  local conn = conn_of(opts)
  local f = { id = view_id(conn, opts.view), since = since_seconds(opts.since) }
  if opts.op ~= nil and not TABLES[opts.op] then
    targets.usage(("invalid op %q: use %s"):format(tostring(opts.op), vocab.OPS_TEXT))
  end
  if opts.status == "orphaned" then
    f.status, f.orphaned = 1, true
  elseif opts.status ~= nil then
    f.status = targets.STATUS_CODE[opts.status]
    if not f.status then
      targets.usage(("invalid status %q: use pending, running, success, failed or orphaned"):format(tostring(opts.status)))
    end
  end
  local limit = opts.limit or 50
  if math.type(limit) ~= "integer" or limit < 1 then
    targets.usage(("invalid limit %q: use a positive integer"):format(tostring(limit)))
  end
  local params, branches = {}, {}
  f.limit_param = param(params, limit)
  for _, op in ipairs(OPS) do
    if opts.op == nil or opts.op == op then branches[#branches + 1] = runs_branch(op, f, params) end
  end
  local sql = ([[
SELECT u.op, u.id, %s AS view, u.mat_view_definition_id AS definition_id, u.status,
  %s AS orphaned,
  %s AS started_at, %s AS finished_at, u.duration_ms, u.rows_count, u.error, u.meta::text AS meta,
  u.backend_pid, u.hostname, u.process_pid, %s AS created_at
FROM (%s) u JOIN mat_view_definitions d ON d.id = u.mat_view_definition_id
ORDER BY u.created_at DESC, u.id DESC LIMIT %s]]):format(LABEL, orphaned_sql("u"), iso("u.started_at"), iso("u.finished_at"),
    iso("u.created_at"), table.concat(branches, "\nUNION ALL\n"), f.limit_param)
  local rows = targets.query(conn, sql, table.unpack(params))
  for _, r in ipairs(rows) do
    r.status = targets.STATUS[r.status] or tostring(r.status)
    r.meta = require("matviews.format").json_column(r.meta)
  end
  return require("matviews.format").iso_meta(conn, rows)
end

-- `slow` needs at least this many successful runs in the stats window: two
-- runs are no baseline.
M.SLOW_MIN_RUNS = 5

-- The latest successful run that filled the view of definition A (a
-- refresh, one skipped as unchanged included, or a create that populated
-- it), as a LATERAL join `fill`: started_at, finished_at, rows (the refresh's
-- rows_count, the create's row_count_after). A refresh skipped because
-- another was running filled nothing.
function M.last_fill_sql(a)
  return (vocab.sql[[
LEFT JOIN LATERAL (SELECT * FROM (
    (SELECT r.started_at, r.finished_at, r.rows_count::bigint AS rows, r.created_at, r.id
       FROM {refresh_runs} r WHERE r.mat_view_definition_id = A.id AND r.status = {success}
        AND coalesce(r.meta->>'skipped', '') <> 'running'
      ORDER BY r.created_at DESC, r.id DESC LIMIT 1)
    UNION ALL
    (SELECT r.started_at, r.finished_at,
            CASE WHEN r.meta->>'row_count_after' ~ '^[0-9]+$' THEN (r.meta->>'row_count_after')::bigint END,
            r.created_at, r.id
       FROM {create_runs} r WHERE r.mat_view_definition_id = A.id AND r.status = {success}
        AND coalesce(r.meta->>'no_data', r.meta->'request'->>'no_data', 'false') <> 'true'
      ORDER BY r.created_at DESC, r.id DESC LIMIT 1)) x
  ORDER BY x.created_at DESC LIMIT 1) fill ON true]]):gsub("A%.", a .. ".")
end

-- The per-view statistics query over one run table (see M.stats).
local STATS_SQL = vocab.sql([[
WITH defs AS (SELECT id, ]] .. LABEL .. [[ AS name FROM mat_view_definitions d WHERE d.deleted_at IS NULL AND %s),
agg AS (
  SELECT r.mat_view_definition_id AS id,
    count(*) FILTER (WHERE r.status = {success}) AS success_count,
    count(*) FILTER (WHERE r.status = {failed}) AS failure_count,
    round(avg(r.duration_ms) FILTER (WHERE r.status = {success}), 1) AS avg_ms,
    min(r.duration_ms) FILTER (WHERE r.status = {success}) AS min_ms,
    max(r.duration_ms) FILTER (WHERE r.status = {success}) AS max_ms,
    round((percentile_cont(0.95) WITHIN GROUP (ORDER BY r.duration_ms)
           FILTER (WHERE r.status = {success}))::numeric, 1) AS p95_ms
  FROM %s r
  WHERE r.mat_view_definition_id IN (SELECT id FROM defs) AND %s
  GROUP BY r.mat_view_definition_id)
SELECT d.id AS definition_id, d.name AS view,
  coalesce(a.success_count, 0) AS success_count, coalesce(a.failure_count, 0) AS failure_count,
  a.avg_ms, a.min_ms, a.max_ms, a.p95_ms,
  last.status AS last_status, %s AS last_run_at,
  ok.duration_ms AS last_duration_ms, ok.rows_count AS last_rows_count,
  %s AS fresh_at, floor(extract(epoch FROM now() - fill.finished_at))::bigint AS fresh_age_s,
  round(prev.avg_ms, 1) AS moving_avg_ms, coalesce(prev.n, 0) AS moving_avg_runs,
  coalesce(a.success_count >= ]] .. M.SLOW_MIN_RUNS .. [[ AND ok.duration_ms > 2 * prev.avg_ms, false) AS slow
FROM defs d
LEFT JOIN agg a ON a.id = d.id
LEFT JOIN LATERAL (SELECT r.status, r.created_at FROM %s r WHERE r.mat_view_definition_id = d.id
                   ORDER BY r.created_at DESC, r.id DESC LIMIT 1) last ON true
LEFT JOIN LATERAL (SELECT r.duration_ms, %s AS rows_count, r.finished_at FROM %s r
                   WHERE r.mat_view_definition_id = d.id AND r.status = {success}
                   ORDER BY r.created_at DESC, r.id DESC LIMIT 1) ok ON true
LEFT JOIN LATERAL (SELECT avg(p.duration_ms) AS avg_ms, count(p.duration_ms) AS n FROM
                    (SELECT r.duration_ms FROM %s r WHERE r.mat_view_definition_id = d.id AND r.status = {success}
                     ORDER BY r.created_at DESC, r.id DESC OFFSET 1 LIMIT 10) p) prev ON true
]] .. M.last_fill_sql("d") .. [[

ORDER BY d.name]])

-- mv.stats{ view, since, op = "refresh", conn }: one row per definition.
-- Over the op's runs created within `since` (default M.STATS_SINCE, the last
-- 7 days; "all" or false: the whole history): success_count,
-- failure_count, avg_ms, min_ms, max_ms, p95_ms (successful runs). Whatever
-- `since` says: last_status, last_run_at (latest run), last_duration_ms and
-- last_rows_count (latest successful run), fresh_at and fresh_age_s (when
-- the latest run that filled the view finished: a refresh, or a create
-- that populated it), moving_avg_ms over the up to 10 successful runs
-- before it, and slow = last_duration_ms > 2 * moving_avg_ms, once the
-- window holds at least SLOW_MIN_RUNS successful runs.
function M.stats(opts)
  opts = opts or {}
  local conn = conn_of(opts)
  local op = opts.op or "refresh"
  local tbl = TABLES[op]
  if not tbl then targets.usage(("invalid op %q: use %s"):format(tostring(op), vocab.OPS_TEXT)) end
  local params = {}
  local id = view_id(conn, opts.view)
  local def_where = id and ("id = " .. param(params, id)) or "true"
  local since = opts.since
  if since == nil then since = M.STATS_SINCE end
  local secs = since_seconds(since)
  local run_where = secs and ("r.created_at >= now() - make_interval(secs => " .. param(params, secs) .. ")") or "true"
  local sql = STATS_SQL:format(def_where, tbl, run_where, iso("last.created_at"), iso("fill.finished_at"),
    tbl, op == "refresh" and "r.rows_count" or "NULL::integer", tbl, tbl)
  local rows = targets.query(conn, sql, table.unpack(params))
  for _, r in ipairs(rows) do
    if r.last_status ~= cjson.null then r.last_status = targets.STATUS[r.last_status] end
  end
  return rows
end

-- The latest run of any op of definition d.id, as a LATERAL subquery.
local LAST_RUN_BRANCHES = {}
for i, op in ipairs(OPS) do
  LAST_RUN_BRANCHES[i] = ([[(SELECT '%s' AS op, status, created_at FROM %s WHERE mat_view_definition_id = d.id
      ORDER BY created_at DESC, id DESC LIMIT 1)]]):format(op, TABLES[op])
end
local LAST_RUN = [[
LEFT JOIN LATERAL (SELECT * FROM (
    ]] .. table.concat(LAST_RUN_BRANCHES, "\n    UNION ALL\n    ") .. [[) x ORDER BY created_at DESC LIMIT 1) last ON true
]] .. M.last_fill_sql("d")

-- The definitions for `matviews list`: id, view, schema, strategy, schedule,
-- exists, populated, last_op, last_status, last_run_at, fresh_at, fresh_age_s,
-- and strategy_error when no file declares the strategy (matviews.strategies.check).
function M.list(opts)
  local conn = conn_of(opts)
  require("matviews.definitions").check(conn)
  local rows = targets.query(conn, ([[
SELECT d.id, %s AS view, d.schema_name AS schema, d.refresh_strategy AS strategy,
  d.options->>'strategy' AS declared_strategy,
  d.schedule_cron AS schedule, c.oid IS NOT NULL AS exists, coalesce(c.relispopulated, false) AS populated,
  last.op AS last_op, last.status AS last_status, %s AS last_run_at,
  %s AS fresh_at, floor(extract(epoch FROM now() - fill.finished_at))::bigint AS fresh_age_s
FROM mat_view_definitions d
LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(d.schema_name) || '.' || quote_ident(d.name))
  AND c.relkind = 'm'
%s
WHERE d.deleted_at IS NULL
ORDER BY d.name, d.schema_name]]):format(LABEL, iso("last.created_at"), iso("fill.finished_at"), LAST_RUN))
  local unknown = nil
  for _, r in ipairs(rows) do
    -- a strategy declared in Lua is listed by its name (see matviews.strategies);
    -- one no file declares carries the error (file and line)
    if r.declared_strategy ~= cjson.null then
      unknown = unknown or require("matviews.strategies").catalog_errors(conn)
      r.strategy_error = unknown[r.view]
    end
    r.strategy = r.declared_strategy ~= cjson.null and r.declared_strategy
      or STRATEGY_NAMES[r.strategy] or tostring(r.strategy)
    r.declared_strategy = nil
    if r.last_status ~= cjson.null then r.last_status = targets.STATUS[r.last_status] end
  end
  return rows
end

-- The data of `matviews metrics`: { counters = { view, op, status, runs,
-- duration_ms_sum, buckets = {n...} } (from matviews_run_counters), buckets
-- (the histogram's upper bounds, seconds), last = { view, op, last_success
-- (epoch seconds of the latest success's finish), last_duration_ms (latest
-- finished run) }, views = { view, staleness_s, rows, size_bytes }, queue =
-- { status = n } }.
function M.metrics_data(opts)
  local conn = conn_of(opts)
  local counters = targets.query(conn, [[
SELECT ]] .. LABEL .. [[ AS view, c.op, c.status, c.runs, c.duration_ms_sum, c.buckets::text AS buckets
  FROM matviews_run_counters c JOIN mat_view_definitions d ON d.id = c.mat_view_definition_id
 WHERE d.deleted_at IS NULL
 ORDER BY 1, 2, 3]])
  for _, c in ipairs(counters) do
    local b = {}
    for n in c.buckets:gmatch("%d+") do b[#b + 1] = math.tointeger(tonumber(n)) end
    c.buckets = b
  end
  local branches = {}
  for _, op in ipairs(OPS) do
    branches[#branches + 1] = (vocab.sql([[
SELECT ]] .. LABEL .. [[ AS view, '%s' AS op,
  (SELECT extract(epoch FROM r.finished_at)::float8 FROM %s r WHERE r.mat_view_definition_id = d.id
     AND r.status = {success} ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS last_success,
  (SELECT r.duration_ms FROM %s r WHERE r.mat_view_definition_id = d.id AND r.status IN ({success}, {failed})
     ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS last_duration_ms
  FROM mat_view_definitions d WHERE d.deleted_at IS NULL]])):format(op, TABLES[op], TABLES[op])
  end
  local last = targets.query(conn, table.concat(branches, "\nUNION ALL\n") .. "\nORDER BY 1, 2")
  local views = targets.query(conn, ([[
SELECT %s AS view, extract(epoch FROM now() - fill.started_at)::float8 AS staleness_s, fill.rows,
  CASE WHEN c.oid IS NOT NULL THEN pg_total_relation_size(c.oid) END AS size_bytes
FROM mat_view_definitions d
LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(d.schema_name) || '.' || quote_ident(d.name))
  AND c.relkind = 'm'
%s
WHERE d.deleted_at IS NULL
ORDER BY 1]]):format(LABEL, M.last_fill_sql("d")))
  return { counters = counters, buckets = require("matviews.schema.008_run_counters").BUCKETS, last = last,
    views = views, queue = require("matviews.queue").counts(conn) }
end

return M
