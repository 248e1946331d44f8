-- The validator: for each definition whose materialized view exists, times
-- the definition's SQL (the baseline) against a full read of the view, and
-- compares the two row multisets inside the database.
--
-- Timing: both sides run as EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT
-- JSON) and the time is the server's planning + execution time: every row is
-- produced, none is sent to the host, so neither side pays for transfer or
-- conversion, and the SQL runs as written (a count(*) wrapper could let the
-- planner drop joins whose columns it does not need). The row counts are the
-- plan's actual rows of the same runs.
--
-- Contents: each row is turned into its text form (works for every type,
-- json included) and both sides are grouped by it in one query; a row counts
-- as differing once per copy that one side has and the other lacks, so
-- duplicates matter (multiset) and one changed value in a view with the same
-- row count gives two differing rows (one missing, one extra).
local M = {}

M.CSV_COLUMNS = {
  "view", "iterations", "baseline_avg_ms", "baseline_min_ms", "baseline_max_ms",
  "mv_avg_ms", "mv_min_ms", "mv_max_ms", "speedup_avg", "rows_baseline", "rows_mv",
  "contents", "differing_rows",
}

local function mvmod() return require "matviews" end

-- The definitions (name, sql) from the catalog, all or the named ones.
-- Returns the list and the names that have no definition.
local function definitions(conn, names)
  local mv = mvmod()
  local all = {}
  if mv.definitions and mv.definitions.list then
    for _, d in ipairs(mv.definitions.list()) do
      all[#all + 1] = { name = d.label, sql = d.sql, schema_name = d.schema_name, rel = d.name }
    end
  else
    all = conn:query("SELECT name, sql FROM mat_view_definitions ORDER BY name")
  end
  if not names or #names == 0 then return all, {} end
  local by_name, out, missing = {}, {}, {}
  for _, d in ipairs(all) do by_name[d.name] = d end
  for _, n in ipairs(names) do
    local d = by_name[n]
    if not d then -- "schema.name" of a plain label, or the reverse
      local found = mv.definitions.find(n, conn)
      d = found and by_name[found.label]
    end
    if d then out[#out + 1] = d else missing[#missing + 1] = n end
  end
  return out, missing
end

-- The materialized view of a definition (in its stored schema): "schema.rel"
-- and its quoted form for SQL, or nil when it does not exist or is not
-- populated.
local function view_of(conn, d)
  local name = d.schema_name and (conn:quote_ident(d.schema_name) .. "." .. conn:quote_ident(d.rel))
    or conn:quote_ident(d.name)
  local r = conn:query([[SELECT n.nspname || '.' || c.relname AS v,
      quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS q FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = to_regclass($1) AND c.relkind = 'm' AND c.relispopulated]], name)[1]
  if not r then return nil end
  return r.v, r.q
end

-- The definition's SQL without a trailing semicolon.
local function clean_sql(sql)
  return (sql:gsub("[%s;]+$", ""))
end

-- Runs sql under EXPLAIN ANALYZE; returns server ms and the rows produced.
local function timed(conn, sql)
  local r = conn:query("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON, FORMAT JSON) " .. sql)[1]
  local plan = mvmod().json.decode(r["QUERY PLAN"])[1]
  local rows = math.tointeger(plan.Plan["Actual Rows"] * (plan.Plan["Actual Loops"] or 1))
  return (plan["Planning Time"] or 0) + plan["Execution Time"], rows
end

-- min/avg/max of a list of numbers.
local function summary(xs)
  local lo, hi, sum = math.huge, -math.huge, 0
  for _, x in ipairs(xs) do
    if x < lo then lo = x end
    if x > hi then hi = x end
    sum = sum + x
  end
  return lo, sum / #xs, hi
end

-- Counts rows of the baseline missing from the view and rows of the view
-- missing from the baseline (multisets), in the database.
function M.compare(conn, sql, view)
  local q = ([[
    SELECT coalesce(sum(greatest(nb - nm, 0)), 0) AS missing,
           coalesce(sum(greatest(nm - nb, 0)), 0) AS extra
    FROM (SELECT count(*) FILTER (WHERE side = 0) AS nb, count(*) FILTER (WHERE side = 1) AS nm
          FROM (SELECT 0 AS side, mv_validate_row::text AS r FROM (%s) mv_validate_row
                UNION ALL
                SELECT 1, mv_validate_row::text FROM %s mv_validate_row) u
          GROUP BY r) g
    WHERE nb <> nm]]):format(sql, view)
  local r = conn:query(q)[1]
  return math.tointeger(r.missing), math.tointeger(r.extra)
end

-- Validates one definition { name, sql } whose view is `view` (qview: quoted).
-- opts: iterations, warmup. Returns the result row (CSV_COLUMNS fields,
-- plus missing_rows, extra_rows, and the raw timings).
function M.one(conn, defn, view, qview, opts)
  local sql = clean_sql(defn.sql)
  local read = "SELECT * FROM " .. qview
  for _ = 1, opts.warmup do timed(conn, sql); timed(conn, read) end
  local bt, mt, rows_b, rows_m = {}, {}, 0, 0
  for i = 1, opts.iterations do
    bt[i], rows_b = timed(conn, sql)
    mt[i], rows_m = timed(conn, read)
  end
  local bmin, bavg, bmax = summary(bt)
  local mmin, mavg, mmax = summary(mt)
  local missing, extra = M.compare(conn, sql, qview)
  local differing = missing + extra
  return {
    view = view, name = defn.name, iterations = opts.iterations,
    baseline_avg_ms = bavg, baseline_min_ms = bmin, baseline_max_ms = bmax,
    mv_avg_ms = mavg, mv_min_ms = mmin, mv_max_ms = mmax,
    speedup_avg = mavg > 0 and bavg / mavg or nil,
    rows_baseline = rows_b, rows_mv = rows_m,
    contents = differing == 0 and "match" or "mismatch",
    differing_rows = differing, missing_rows = missing, extra_rows = extra,
  }
end

-- Runs fn(conn) in a read-only transaction that is then rolled back, and
-- returns what fn returned: the definition's SQL runs here on its own (not
-- inside CREATE MATERIALIZED VIEW), so a data-modifying WITH, SELECT INTO
-- or a function that writes must fail rather than change anything.
local function read_only(conn, fn)
  local undo = {}
  local ok, err = pcall(mvmod().transaction, function(c)
    c:exec("SET TRANSACTION READ ONLY")
    undo.result = fn(c)
    error(undo, 0)
  end, conn)
  if not ok and err == undo then return undo.result end
  error(err, 0)
end

-- Validates the named definitions (all when names is empty).
-- opts: names, iterations (default 5), warmup (default 1), conn.
-- Returns { results = {...}, skipped = { {name, reason} }, missing = {names},
-- mismatches = n }.
function M.run(opts)
  opts = opts or {}
  local mv = mvmod()
  local conn = opts.conn or mv.conn()
  local o = { iterations = opts.iterations or 5, warmup = opts.warmup or 1 }
  local defs, missing = definitions(conn, opts.names)
  local out = { results = {}, skipped = {}, missing = missing, mismatches = 0 }
  for _, d in ipairs(defs) do
    local view, qview = view_of(conn, d)
    if view then
      local r = read_only(conn, function(c) return M.one(c, d, view, qview, o) end)
      out.results[#out.results + 1] = r
      if r.contents ~= "match" then out.mismatches = out.mismatches + 1 end
    else
      out.skipped[#out.skipped + 1] = { name = d.name, reason = "view does not exist or is not populated" }
    end
  end
  return out
end

-- Formats a value for CSV: numbers with 3 decimals (speedup 2), text quoted
-- when it holds a comma, quote or newline.
local function csv_cell(key, v)
  if v == nil then return "" end
  if math.type(v) == "float" then
    return ("%." .. (key == "speedup_avg" and 2 or 3) .. "f"):format(v)
  end
  local s = tostring(v)
  if s:find('[,"\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- The CSV text of results: header line, then one line per view.
function M.csv(results)
  local lines = { table.concat(M.CSV_COLUMNS, ",") }
  for _, r in ipairs(results) do
    local cells = {}
    for i, k in ipairs(M.CSV_COLUMNS) do cells[i] = csv_cell(k, r[k]) end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- The text table of results (via matviews.output).
function M.render(results)
  local rows = {}
  local function ms3(lo, avg, hi) return ("%.2f | %.2f | %.2f"):format(lo, avg, hi) end
  for _, r in ipairs(results) do
    rows[#rows + 1] = {
      view = r.view, iterations = r.iterations,
      baseline = ms3(r.baseline_min_ms, r.baseline_avg_ms, r.baseline_max_ms),
      mv = ms3(r.mv_min_ms, r.mv_avg_ms, r.mv_max_ms),
      speedup = r.speedup_avg and ("%.1fx"):format(r.speedup_avg) or "",
      rows_baseline = r.rows_baseline, rows_mv = r.rows_mv,
      contents = r.contents == "match" and "match"
        or ("mismatch (%s)"):format(require("matviews.format").count(r.differing_rows, "row")),
    }
  end
  return require("matviews.output").table(rows, {
    { "view", "view" }, { "iterations", "iter", align = "right" },
    { "baseline", "baseline ms min|avg|max", align = "right" },
    { "mv", "mv ms min|avg|max", align = "right" },
    { "speedup", "speedup", align = "right" },
    { "rows_baseline", "rows baseline", align = "right" },
    { "rows_mv", "rows mv", align = "right" },
    { "contents", "contents" },
  })
end

return M
