-- Row counts and statistics: a create or refresh ANALYZEs the view (unless
-- `analyze = false` in the definition or the configuration), so the default
-- `estimated` count is never blank and the planner has statistics at once;
-- the FRESH of a view created populated is its create run; `slow` waits for
-- five successful runs.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function stats_rows(view)
  return mv.query("SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'public' AND tablename = $1", view)[1].n
end

-- The ANALYZE commands run on a view (not autovacuum's, which may analyze a
-- new view meanwhile and give it statistics of its own).
local function analyzes(view)
  return mv.query([[SELECT coalesce(max(analyze_count), 0)::int AS n FROM pg_stat_user_tables
    WHERE schemaname = 'public' AND relname = $1]], view)[1].n
end

describe("row counts and statistics", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE rc_src (id int PRIMARY KEY, g int)")
    mv.exec("INSERT INTO rc_src SELECT i, i % 7 FROM generate_series(1, 1000) i")
    for _, s in ipairs({ "regular", "concurrent", "swap" }) do
      mv.definitions.save({ name = "rc_" .. s, sql = "SELECT id, g FROM rc_src", refresh_strategy = s,
        unique_index_columns = { "id" } })
    end
  end)

  it("estimated counts are the ANALYZE estimate after every strategy, never blank", function()
    for _, s in ipairs({ "regular", "concurrent", "swap" }) do
      local name = "rc_" .. s
      local c = mv.create(name)
      assert.are.equal("success", c.status, c.error)
      assert.are.equal(1000, c.meta.row_count_after, name)
      assert.is_true(stats_rows(name) > 0, name .. " has planner statistics after create")
      mv.exec("INSERT INTO rc_src SELECT i, 0 FROM generate_series(1001, 1500) i")
      local r = mv.refresh(name)
      assert.are.equal("success", r.status, r.error)
      assert.are.equal(1500, r.rows_count, name)
      local sql = r.meta.response.sql
      assert.matches("^ANALYZE ", sql[#sql], 1, name)
      mv.exec("DELETE FROM rc_src WHERE id > 1000")
    end
  end)

  it("does not ANALYZE with analyze = false, in the definition or the configuration", function()
    mv.exec("DROP MATERIALIZED VIEW IF EXISTS rc_regular")
    local d = mv.definitions.get("rc_regular")
    mv.definitions.save({ name = "rc_regular", sql = d.sql, options = { analyze = false } })
    local c = mv.create("rc_regular")
    assert.are.equal("success", c.status)
    assert.are.equal(0, analyzes("rc_regular"))
    for _, q in ipairs(c.meta.response.sql) do assert.is_nil(q:match("^ANALYZE")) end
    mv.definitions.save({ name = "rc_regular", sql = d.sql, options = {} })
    local cfg = H.write(H.tmpfile(".lua"), "analyze = false\n")
    local r = H.mv("--config " .. H.q(cfg) .. " refresh rc_regular --yes --json")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(0, analyzes("rc_regular"))
    r = H.mv("refresh rc_regular --yes --json")
    assert.are.equal(1000, cjson.decode(r.out)[1].rows_count)
    assert.is_true(stats_rows("rc_regular") > 0)
    assert.are.equal(1, analyzes("rc_regular"))
  end)

  it("shows a view created populated as fresh from its create run, one created empty as never", function()
    mv.definitions.save({ name = "rc_new", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "rc_empty", sql = "SELECT 1 AS x" })
    assert.are.equal(0, H.mv("create rc_new --yes").code)
    assert.are.equal(0, H.mv("create rc_empty --no-data --yes").code)
    local list = {}
    for _, r in ipairs(cjson.decode(H.mv("list --json").out)) do list[r.view] = r end
    local created = mv.query([[SELECT to_char(r.finished_at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM') AS t
      FROM mat_view_create_runs r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
      WHERE d.name = 'rc_new']])[1].t
    assert.are.equal(created, list.rc_new.fresh_at)
    assert.are.equal(cjson.null, list.rc_empty.fresh_at)
    local st = {}
    for _, r in ipairs(cjson.decode(H.mv("stats --json").out)) do st[r.view] = r end
    assert.are.equal(created, st.rc_new.fresh_at)
    assert.matches("\n +%d+  rc_new +public +regular +populated +create success [%d:T+-]+ +%d+s ago\n", H.mv("list").out)
  end)

  it("flags slow only with five successful runs in the window", function()
    local id = mv.definitions.get("rc_new").id
    local function add(ms)
      mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms, created_at)
        VALUES ($1, 2, now(), now(), $2, clock_timestamp())]], id, ms)
    end
    add(100); add(5000)                 -- two runs: no baseline
    assert.is_false(mv.stats({ view = "rc_new" })[1].slow)
    add(100); add(100); add(100); add(5000)
    assert.is_true(mv.stats({ view = "rc_new" })[1].slow)
  end)
end)
