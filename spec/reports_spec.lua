-- Reports over fixture runs inserted with SQL: mv.runs (order, filters,
-- orphans), mv.stats against hand-computed figures, the list data, and the
-- `runs`, `stats`, `list` and `metrics` commands (text, --json, exit codes).
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- Definitions a (concurrent), b (regular), c (swap, no runs) and their runs.
-- a: successful refreshes 100..1100 ms at 12h..2h ago, then 3000 ms (42 rows)
-- 90 min ago; failures of 50 ms 6.5h ago and 60 ms 30 min ago.
-- b: one create (success) and one refresh of 10 ms (5 rows) a day and 10 min ago.
-- Every age sits mid-way in its display unit ("1h ago", "1d ago"), so no
-- assertion changes with how long the suite takes to reach it.
local function fixture()
  mv.init()
  mv.exec([[INSERT INTO mat_view_definitions (name, sql, refresh_strategy) VALUES
    ('a', 'SELECT 1 AS x', 1), ('b', 'SELECT 2 AS x', 0), ('c', 'SELECT 3 AS x', 2)]])
  local ids = {}
  for _, r in ipairs(mv.query("SELECT id, name FROM mat_view_definitions")) do ids[r.name] = r.id end
  local ins = [[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at,
      duration_ms, rows_count, error, created_at)
    VALUES ($1, $2, now() - make_interval(secs => $3), now() - make_interval(secs => $3) + make_interval(secs => $4 / 1000.0),
      $4, $5, $6, now() - make_interval(secs => $3))]]
  for k = 1, 11 do mv.exec(ins, ids.a, 2, (13 - k) * 3600, k * 100, k, nil) end
  mv.exec(ins, ids.a, 2, 5400, 3000, 42, nil)
  mv.exec(ins, ids.a, 3, 6.5 * 3600, 50, nil, "boom one")
  mv.exec(ins, ids.a, 3, 1800, 60, nil, "boom two")
  mv.exec(ins, ids.b, 2, 87000, 10, 5, nil)
  mv.exec([[INSERT INTO mat_view_create_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms, created_at)
    VALUES ($1, 2, now() - interval '2 days', now() - interval '2 days', 7, now() - interval '2 days')]], ids.b)
  return ids
end

local function by_view(rows)
  local t = {}
  for _, r in ipairs(rows) do t[r.view] = r end
  return t
end

describe("mv.stats", function()
  local ids
  setup(function() H.fresh_db(); ids = fixture() end)

  it("computes the figures of every view over all runs", function()
    local s = by_view(mv.stats())
    local a = s.a
    assert.are.equal(ids.a, a.definition_id)
    assert.are.equal(12, a.success_count)
    assert.are.equal(2, a.failure_count)
    assert.are.equal(800, a.avg_ms)              -- (100 + ... + 1100 + 3000) / 12
    assert.are.equal(100, a.min_ms)
    assert.are.equal(3000, a.max_ms)
    assert.are.equal(1955, a.p95_ms)             -- 1100 + 0.45 * (3000 - 1100)
    assert.are.equal("failed", a.last_status)
    assert.are.equal(3000, a.last_duration_ms)
    assert.are.equal(42, a.last_rows_count)
    assert.are.equal(650, a.moving_avg_ms)       -- (200 + ... + 1100) / 10
    assert.are.equal(10, a.moving_avg_runs)
    assert.is_true(a.slow)                       -- 3000 > 2 * 650
    assert.is_true(a.fresh_age_s >= 5396 and a.fresh_age_s < 7200) -- finished 3 s after it started 90 min ago
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%+00:00$", a.fresh_at)

    assert.are.equal(1, s.b.success_count)
    assert.are.equal(10, s.b.avg_ms)
    assert.are.equal(10, s.b.p95_ms)
    assert.are.equal(mv.null, s.b.moving_avg_ms)
    assert.are.equal(0, s.b.moving_avg_runs)
    assert.is_false(s.b.slow)

    assert.are.same({ 0, 0, mv.null, mv.null, mv.null, false },
      { s.c.success_count, s.c.failure_count, s.c.avg_ms, s.c.last_status, s.c.fresh_at, s.c.slow })
  end)

  it("aggregates only the runs within since, keeping last and freshness", function()
    local a = mv.stats({ view = "a", since = "150m" })
    assert.are.equal(1, #a)
    a = a[1]
    assert.are.same({ 2, 1, 2050, 1100, 3000, 2905 },
      { a.success_count, a.failure_count, a.avg_ms, a.min_ms, a.max_ms, a.p95_ms })
    assert.are.equal(3000, a.last_duration_ms)
    -- two successes in the window are no baseline: slow needs five
    assert.are.same({ 650, false }, { a.moving_avg_ms, a.slow })
    assert.is_true(mv.stats({ view = "a", since = "6h" })[1].success_count >= 5)
    assert.is_true(mv.stats({ view = "a", since = "6h" })[1].slow)
  end)

  it("is not slow when the last duration is at most twice the moving average", function()
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, duration_ms, created_at)
      VALUES ($1, 2, 1300, now())]], ids.a)
    local a = mv.stats({ view = "a" })[1]
    assert.are.equal(1300, a.last_duration_ms)
    assert.are.equal(930, a.moving_avg_ms)       -- (300 + ... + 1100 + 3000) / 10
    assert.is_false(a.slow)
    mv.exec("DELETE FROM mat_view_refresh_runs WHERE duration_ms = 1300")
  end)

  it("aggregates the last 7 days by default, the whole history with since = all", function()
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, duration_ms, created_at)
      VALUES ($1, 2, 70, now() - interval '8 days')]], ids.b)
    local b = mv.stats({ view = "b" })[1]
    assert.are.same({ 1, 10, 10 }, { b.success_count, b.avg_ms, b.max_ms })
    b = mv.stats({ view = "b", since = "all" })[1]
    assert.are.same({ 2, 40, 70 }, { b.success_count, b.avg_ms, b.max_ms })
    assert.are.same({ 2, 40 }, { mv.stats({ view = "b", since = false })[1].success_count,
      mv.stats({ view = "b", since = "9d" })[1].avg_ms })
    local r = H.mv("stats b")
    assert.are.equal(0, r.code)
    assert.matches("\nb +1 +0 +10 ", r.out)
    assert.matches("\nOK, FAILED and durations: runs of the last 7d\n$", r.out)
    r = H.mv("stats b --since all")
    assert.matches("\nb +2 +0 +40 ", r.out)
    assert.matches("\nOK, FAILED and durations: all runs\n$", r.out)
    mv.exec("DELETE FROM mat_view_refresh_runs WHERE duration_ms = 70")
  end)

  it("aggregates another operation with op", function()
    local b = mv.stats({ view = "b", op = "create" })[1]
    assert.are.same({ 1, 7, "success" }, { b.success_count, b.avg_ms, b.last_status })
  end)

  it("raises usage errors for a bad duration or an unknown view", function()
    local ok, e = pcall(mv.stats, { since = "7 days" })
    assert.is_false(ok)
    assert.are.equal('invalid duration "7 days": use a number and a unit s, m, h, d or w (e.g. 90s, 30m, 24h, 7d)',
      e.message)
    assert.are.equal(2, e.exit)
    ok, e = pcall(mv.stats, { view = "nope" })
    assert.are.equal("no definition named nope", e.message)
  end)
end)

describe("duration parsing", function()
  local parse = require("matviews.reports").parse_duration
  it("reads s, m, h, d, w and sums of them", function()
    assert.are.same({ 90, 1800, 86400, 604800, 1209600, 5400 },
      { parse("90s"), parse("30m"), parse("24h"), parse("7d"), parse("2w"), parse("1h30m") })
  end)
  it("refuses anything else", function()
    for _, s in ipairs({ "", "7", "d", "-1h", "1.5h", "1y", "1h 30m" }) do
      local v, err = parse(s)
      assert.is_nil(v)
      assert.matches("^invalid duration", err)
    end
  end)
end)

describe("mv.runs", function()
  local ids
  setup(function() H.fresh_db(); ids = fixture() end)

  it("lists runs newest first across the run tables", function()
    local runs = mv.runs({ limit = 100 })
    assert.are.equal(16, #runs)
    assert.are.same({ "refresh", "a", "failed", "boom two", 60 },
      { runs[1].op, runs[1].view, runs[1].status, runs[1].error, runs[1].duration_ms })
    assert.are.equal(3000, runs[2].duration_ms)
    assert.are.same({ "create", "b" }, { runs[16].op, runs[16].view })
    for i = 2, #runs do assert.is_true(runs[i - 1].created_at >= runs[i].created_at) end
    assert.are.same({}, runs[1].meta)
    assert.is_false(runs[1].orphaned)
  end)

  it("filters by view, op, status, since and limit", function()
    assert.are.equal(14, #mv.runs({ view = "a", limit = 100 }))
    assert.are.equal(14, #mv.runs({ view = ids.a, limit = 100 }))
    assert.are.equal(1, #mv.runs({ op = "create" }))
    assert.are.equal(2, #mv.runs({ view = "b" }))
    local failed = mv.runs({ status = "failed" })
    assert.are.same({ "boom two", "boom one" }, { failed[1].error, failed[2].error })
    assert.are.equal(3, #mv.runs({ since = "150m" }))
    assert.are.equal(5, #mv.runs({ limit = 5 }))
    assert.are.equal(0, #mv.runs({ view = "c" }))
  end)

  it("refuses a bad op, status or limit", function()
    local _, e = pcall(mv.runs, { op = "drop" })
    assert.are.equal('invalid op "drop": use create, refresh or delete', e.message)
    _, e = pcall(mv.runs, { status = "ok" })
    assert.are.equal('invalid status "ok": use pending, running, success, failed or orphaned', e.message)
    _, e = pcall(mv.runs, { limit = 0 })
    assert.are.equal('invalid limit "0": use a positive integer', e.message)
  end)

  it("marks a running run whose backend is gone as orphaned, not one whose backend lives", function()
    local other = mv.connect("dbname=" .. H.dbname)
    local gone = other:query("SELECT pg_backend_pid() AS pid")[1].pid
    other:close()
    for _ = 1, 100 do
      if #mv.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", gone) == 0 then break end
      mv.core.sys.sleep_ms(20)
    end
    local live = mv.query("SELECT pg_backend_pid() AS pid")[1].pid
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, backend_pid, hostname, process_pid)
      VALUES ($1, 1, now(), $2, 'h1', 11), ($1, 1, now(), $3, 'h2', 22)]], ids.c, gone, live)
    local runs = mv.runs({ view = "c" })
    assert.are.equal(2, #runs)
    local by_pid = {}
    for _, r in ipairs(runs) do by_pid[r.backend_pid] = r end
    assert.is_true(by_pid[gone].orphaned)
    assert.are.equal("running", by_pid[gone].status)
    assert.is_false(by_pid[live].orphaned)
    local orphans = mv.runs({ status = "orphaned" })
    assert.are.equal(1, #orphans)
    assert.are.same({ gone, "h1", 11 }, { orphans[1].backend_pid, orphans[1].hostname, orphans[1].process_pid })

    local r = H.mv("runs c")
    assert.are.equal(0, r.code)
    assert.matches("\n *%d+ +refresh +c +orphaned +[%d-]+T[%d:]+%+00:00 +h1:11", r.out)
    assert.matches("\n *%d+ +refresh +c +running +[%d-]+T[%d:]+%+00:00 +h2:22", r.out)
    mv.exec("DELETE FROM mat_view_refresh_runs WHERE mat_view_definition_id = $1", ids.c)
  end)
end)

describe("the runs, stats, list and metrics commands", function()
  local ids
  setup(function() H.fresh_db(); ids = fixture() end)

  it("runs: an aligned table, --json before or after the command name", function()
    local r = H.mv("runs a --limit 3")
    assert.are.equal(0, r.code)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(5, #lines)
    assert.matches("^ *ID  OP       VIEW  STATUS +STARTED +MS  ROWS  BY  ERROR$", lines[1])
    assert.matches("^%-+  %-+", lines[2])
    assert.matches("refresh  a +failed  .* 60 .*boom two$", lines[3])
    for _, args in ipairs({ "--json runs a --limit 3", "runs a --limit 3 --json" }) do
      local j = H.mv(args)
      assert.are.equal(0, j.code)
      local doc = cjson.decode(j.out)
      assert.are.equal(3, #doc)
      assert.are.same({ "a", "refresh", "failed", 60, false }, { doc[1].view, doc[1].op, doc[1].status,
        doc[1].duration_ms, doc[1].orphaned })
    end
    assert.are.equal("[]\n", H.mv("runs c --json").out)
  end)

  it("runs: filters from the command line", function()
    local doc = cjson.decode(H.mv("runs --json --op refresh --status success --since 150m").out)
    assert.are.equal(2, #doc)
    assert.are.same({ 3000, 1100 }, { doc[1].duration_ms, doc[2].duration_ms })
    doc = cjson.decode(H.mv("runs b --op create --json").out)
    assert.are.same({ "create" }, { doc[1].op })
  end)

  it("exits 2 on a bad duration, limit, status or an unknown view", function()
    local r = H.mv("runs --since 3x")
    assert.are.equal(2, r.code)
    assert.are.equal('invalid duration "3x": use a number and a unit s, m, h, d or w (e.g. 90s, 30m, 24h, 7d)', H.usage_message(r.err))
    r = H.mv("stats --since yesterday")
    assert.are.equal(2, r.code)
    assert.matches('invalid duration "yesterday"', r.err)
    r = H.mv("runs --limit 0")
    assert.are.equal(2, r.code)
    assert.matches('invalid count "0": use a positive integer', r.err)
    r = H.mv("runs --status ok")
    assert.are.equal(2, r.code)
    r = H.mv("runs nope")
    assert.are.equal(2, r.code)
    assert.are.equal("no definition named nope", H.usage_message(r.err))
    assert.are.equal("", r.out)
  end)

  it("resolves schema-qualified names and names a materialized view without a definition", function()
    mv.exec("CREATE SCHEMA other")
    mv.exec("CREATE MATERIALIZED VIEW other.stray AS SELECT 1 AS x")
    local r = H.mv("runs other.stray")
    assert.are.equal(2, r.code)
    assert.are.equal("materialized view other.stray exists but has no definition", H.usage_message(r.err))
    r = H.mv("stats other.nothing")
    assert.are.equal(2, r.code)
    assert.are.equal("no definition for other.nothing", H.usage_message(r.err))
    r = H.mv("runs public.a --json --limit 100")
    assert.are.equal(0, r.code)
    assert.are.equal(14, #cjson.decode(r.out))
    mv.exec("DROP SCHEMA other CASCADE")
  end)

  it("stats: a table with the slow flag, and --json", function()
    local r = H.mv("stats")
    assert.are.equal(0, r.code)
    assert.matches("VIEW  OK  FAILED  AVG MS  MIN   P95   MAX  LAST", r.out)
    assert.matches("\na +12 +2 +800 +100 +1955 +3000 +failed +3000 +42 +1h ago +slow\n", r.out)
    assert.matches("\nc +0 +0 +never\n", r.out)
    local doc = cjson.decode(H.mv("stats a --since 150m --json").out)
    assert.are.same({ "a", 2, 2050, 2905, false }, { doc[1].view, doc[1].success_count, doc[1].avg_ms,
      doc[1].p95_ms, doc[1].slow })
  end)

  it("list: strategy, existence, population, last run and freshness", function()
    mv.exec("CREATE MATERIALIZED VIEW b AS SELECT 2 AS x")
    mv.exec("CREATE MATERIALIZED VIEW c AS SELECT 3 AS x WITH NO DATA")
    local doc = by_view(cjson.decode(H.mv("--json list").out))
    assert.are.same({ "concurrent", false, false, "refresh", "failed" },
      { doc.a.strategy, doc.a.exists, doc.a.populated, doc.a.last_op, doc.a.last_status })
    assert.are.same({ "regular", true, true, "refresh", "success", "public" },
      { doc.b.strategy, doc.b.exists, doc.b.populated, doc.b.last_op, doc.b.last_status, doc.b.schema })
    assert.are.same({ "swap", true, false, cjson.null, cjson.null },
      { doc.c.strategy, doc.c.exists, doc.c.populated, doc.c.last_op, doc.c.fresh_at })
    assert.is_true(doc.b.fresh_age_s >= 86400)
    local r = H.mv("list")
    assert.are.equal(0, r.code)
    assert.matches("\n +%d+ +a +public +concurrent +missing +refresh failed [%d-]+T[%d:]+%+00:00 +1h ago\n", r.out)
    assert.matches("\n +%d+ +b +public +regular +populated +refresh success .* 1d ago\n", r.out)
    assert.matches("\n +%d+ +c +public +swap +not populated +never\n", r.out)
    mv.exec("DROP MATERIALIZED VIEW b")
    mv.exec("DROP MATERIALIZED VIEW c")
  end)

  it("metrics: valid Prometheus text exposition with the fixture's figures", function()
    local r = H.mv("metrics")
    assert.are.equal(0, r.code)
    local declared, samples = {}, {}
    for line in r.out:gmatch("([^\n]*)\n") do
      local hname = line:match("^# HELP ([%a_:][%w_:]*) %S")
      local tname, ttype = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      if hname then declared[hname] = "help"
      elseif tname then
        assert.are.equal("help", declared[tname])
        assert.truthy(ttype == "counter" or ttype == "gauge" or ttype == "histogram")
        declared[tname] = ttype
      else
        local name, labels, value = line:match('^([%a_:][%w_:]*){(.-)} (%S+)$')
        if not name then name, value = line:match('^([%a_:][%w_:]*) (%S+)$'); labels = "" end
        assert.truthy(name, "not a sample line: " .. line)
        name = declared[name] and name or name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        assert.truthy(declared[name], "sample before its TYPE: " .. line)
        assert.truthy(tonumber(value), line)
        if labels ~= "" then
          for pair in (labels .. ","):gmatch("(.-),") do assert.matches('^[%a_][%w_]*=".*"$', pair) end
        end
        samples[name .. "{" .. labels .. "}"] = tonumber(value)
      end
    end
    assert.are.equal(12, samples['matviews_runs_total{view="a",op="refresh",status="success"}'])
    assert.are.equal(2, samples['matviews_runs_total{view="a",op="refresh",status="failed"}'])
    assert.are.equal(1, samples['matviews_runs_total{view="b",op="create",status="success"}'])
    assert.are.equal(2, samples['matviews_failures_total{view="a"}'])
    assert.are.equal(0, samples['matviews_failures_total{view="c"}'])
    assert.are.equal(0.06, samples['matviews_last_duration_seconds{view="a",op="refresh"}'])
    local fin = mv.query([[SELECT extract(epoch FROM finished_at)::float8 AS t FROM mat_view_refresh_runs
      WHERE mat_view_definition_id = $1 AND duration_ms = 3000]], ids.a)[1].t
    assert.is_true(math.abs(fin - samples['matviews_last_success_timestamp_seconds{view="a",op="refresh"}']) < 0.001)
    assert.is_nil(samples['matviews_last_success_timestamp_seconds{view="c",op="refresh"}'])
    local doc = cjson.decode(H.mv("metrics --json").out)
    assert.are.equal(1, doc.up)
    assert.is_true(#doc.counters > 0 and #doc.views == 3)
  end)

  it("metrics: escapes label values", function()
    local text = require("matviews.commands.metrics").render({ up = 1, buckets = {},
      counters = { { view = 'a"b\\c\nd', op = "refresh", status = "success", runs = 1, duration_ms_sum = 0, buckets = { 1 } } } })
    assert.truthy(text:find('\nmatviews_runs_total{view="a\\"b\\\\c\\nd",op="refresh",status="success"} 1\n', 1, true))
  end)
end)

describe("reports without the catalog", function()
  setup(function() H.fresh_db() end)

  it("say to run matviews init", function()
    local r = H.mv("runs")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: the matviews catalog is not installed in this database: run `matviews init`\n", r.err)
    assert.are.equal(1, H.mv("stats nope").code)
  end)
end)
