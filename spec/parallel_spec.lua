-- Dependency-aware parallel refresh (mv.refresh_all): the order seen in the
-- run rows' started_at/finished_at, reading through a plain view, a failed
-- upstream failing its downstream by name while independent branches go on,
-- and --upstream/--downstream selections.
local H = require "spec.helper"
local mv = require "matviews"

-- name -> SQL; slow views sleep so that a wrong order would overlap.
local VIEWS = {
  { "p_a", "SELECT id FROM base, pg_sleep(0.3)" },
  { "p_b", "SELECT count(*) AS n FROM v_pa" },              -- p_a through a plain view
  { "p_c", "SELECT max(id) AS m FROM p_a, pg_sleep(0.1)" },  -- p_a directly
  { "p_d", "SELECT n, m FROM p_b, p_c" },                    -- both
  { "p_x", "SELECT id FROM base, pg_sleep(0.3)" },           -- independent
  { "f_bad", "SELECT 1 / d AS q FROM divisor" },             -- fails once divisor is 0
  { "f_down", "SELECT q FROM f_bad" },
  { "f_down2", "SELECT q FROM f_down" },
}

-- Runs of this spec since mark: name -> { status, error, s, f (epoch ms) }.
local function runs_since(mark)
  local out = {}
  for _, r in ipairs(mv.query([[SELECT d.name, r.status, r.error,
        (extract(epoch FROM r.started_at) * 1000)::bigint AS s, (extract(epoch FROM r.finished_at) * 1000)::bigint AS f
      FROM mat_view_refresh_runs r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
      WHERE r.id > $1 ORDER BY r.id]], mark)) do
    assert.is_nil(out[r.name], "one run per view")
    out[r.name] = r
  end
  return out
end

local function mark()
  return mv.query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
end

local names = require("matviews.deps").sorted_keys

local function assert_after(runs, up, down)
  assert.is_true(runs[down].s >= runs[up].f, down .. " started before " .. up .. " finished")
end

describe("mv.refresh_all", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE base (id int)")
    mv.exec("INSERT INTO base VALUES (1), (2)")
    mv.exec("CREATE TABLE divisor (d int)")
    mv.exec("INSERT INTO divisor VALUES (1)")
    for _, v in ipairs(VIEWS) do
      mv.exec("CREATE MATERIALIZED VIEW " .. v[1] .. " AS " .. v[2]:gsub("pg_sleep%([%d.]+%)", "pg_sleep(0)"))
      if v[1] == "p_a" then mv.exec("CREATE VIEW v_pa AS SELECT * FROM p_a") end
      mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ($1, $2)", v[1], v[2])
    end
    -- the slow versions, now that everything exists
    mv.exec("DROP MATERIALIZED VIEW p_a CASCADE")
    mv.exec("CREATE MATERIALIZED VIEW p_a AS " .. VIEWS[1][2])
    mv.exec("CREATE VIEW v_pa AS SELECT * FROM p_a")
    mv.exec("CREATE MATERIALIZED VIEW p_b AS " .. VIEWS[2][2])
    mv.exec("CREATE MATERIALIZED VIEW p_c AS " .. VIEWS[3][2])
    mv.exec("CREATE MATERIALIZED VIEW p_d AS " .. VIEWS[4][2])
    mv.exec("DROP MATERIALIZED VIEW p_x")
    mv.exec("CREATE MATERIALIZED VIEW p_x AS " .. VIEWS[5][2])
  end)

  it("refreshes in dependency order, a view after what it reads through a plain view", function()
    local m = mark()
    local r = mv.refresh_all({ parallel = 3 })
    assert.is_true(r.ok, mv.json.encode(r))
    assert.are.same({ 8, 8, 0, 0 }, { r.total, r.succeeded, r.failed, r.skipped })
    local runs = runs_since(m)
    assert.are.same({ "f_bad", "f_down", "f_down2", "p_a", "p_b", "p_c", "p_d", "p_x" }, names(runs))
    assert_after(runs, "p_a", "p_b")
    assert_after(runs, "p_a", "p_c")
    assert_after(runs, "p_b", "p_d")
    assert_after(runs, "p_c", "p_d")
    assert_after(runs, "f_bad", "f_down")
    assert_after(runs, "f_down", "f_down2")
    -- with three processes the independent p_x ran alongside p_a
    assert.is_true(runs.p_x.s < runs.p_a.f and runs.p_a.s < runs.p_x.f)
  end)

  it("runs one at a time with parallel = 1", function()
    local m = mark()
    assert.is_true(mv.refresh_all({ parallel = 1 }).ok)
    local runs, list = runs_since(m), {}
    for _, r in pairs(runs) do list[#list + 1] = r end
    table.sort(list, function(a, b) return a.s < b.s end)
    for i = 2, #list do assert.is_true(list[i].s >= list[i - 1].f, list[i].name .. " overlapped") end
  end)

  it("fails everything downstream of a failed refresh by its name and goes on with the rest", function()
    mv.exec("UPDATE divisor SET d = 0")
    local m = mark()
    local r = mv.refresh_all({ parallel = 2 })
    assert.is_false(r.ok)
    assert.are.same({ 8, 5, 1, 2 }, { r.total, r.succeeded, r.failed, r.skipped })
    local runs = runs_since(m)
    assert.are.equal(3, runs.f_bad.status)
    assert.matches("division by zero", runs.f_bad.error)
    for _, n in ipairs({ "f_down", "f_down2" }) do
      assert.are.equal(3, runs[n].status)
      assert.are.equal("not refreshed: upstream f_bad failed", runs[n].error)
    end
    for _, n in ipairs({ "p_a", "p_b", "p_c", "p_d", "p_x" }) do assert.are.equal(2, runs[n].status) end
    local meta = mv.query([[SELECT r.meta->>'upstream_failed' AS up FROM mat_view_refresh_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE d.name = 'f_down2' ORDER BY r.id DESC LIMIT 1]])[1]
    assert.are.equal("f_bad", meta.up)
    mv.exec("UPDATE divisor SET d = 1")
  end)

  it("refreshes what a view reads first (upstream) or what reads it after (downstream)", function()
    local m = mark()
    assert.is_true(mv.refresh_all({ views = { "p_d" }, upstream = true, parallel = 2 }).ok)
    local runs = runs_since(m)
    assert.are.same({ "p_a", "p_b", "p_c", "p_d" }, names(runs))
    assert_after(runs, "p_b", "p_d")
    m = mark()
    assert.is_true(mv.refresh_all({ views = { "p_b" }, downstream = true }).ok)
    assert.are.same({ "p_b", "p_d" }, names(runs_since(m)))
    m = mark()
    assert.is_true(mv.refresh_all({ views = { "p_c" } }).ok)
    assert.are.same({ "p_c" }, names(runs_since(m)))
  end)

  it("rejects an unknown view and a bad parallel count", function()
    local ok, err = pcall(mv.refresh_all, { views = { "nope" } })
    assert.is_false(ok)
    assert.are.equal('no definition named "nope"', err.message)
    ok, err = pcall(mv.refresh_all, { parallel = 0 })
    assert.is_false(ok)
    assert.are.equal("parallel must be a whole number of at least 1", err.message)
  end)

  describe("matviews refresh --parallel", function()

    it("refreshes everything in dependency order and prints a line per view", function()
      local m = mark()
      local r = H.mv("refresh --all --parallel 2 --yes")
      assert.are.equal(0, r.code, r.err)
      local _, lines = r.out:gsub("%[%d/8%] refresh [%w_]+: success in %d+ ms[^\n]*\n", "")
      assert.are.equal(8, lines, r.out)
      local runs = runs_since(m)
      assert_after(runs, "p_b", "p_d")
      assert_after(runs, "f_down", "f_down2")
    end)

    it("exits 1 and names the failed upstream of what it did not run", function()
      mv.exec("UPDATE divisor SET d = 0")
      local r = H.mv("refresh --all --parallel 3 --yes")
      mv.exec("UPDATE divisor SET d = 1")
      assert.are.equal(1, r.code)
      assert.matches("%] refresh f_bad: failed in %d+ ms: [^\n]*division by zero", r.out)
      assert.matches("%] refresh f_down: failed: not refreshed: upstream f_bad failed\n", r.out)
      assert.matches("%] refresh f_down2: failed: not refreshed: upstream f_bad failed\n", r.out)
      assert.matches("%] refresh p_d: success", r.out)
    end)

    it("refreshes a view after what it reads with --upstream, --json", function()
      local r = H.mv("refresh p_d --upstream --yes --json")
      assert.are.equal(0, r.code, r.err)
      local views = {}
      for i, x in ipairs(mv.json.decode(r.out)) do views[i] = x.view end
      assert.are.equal("p_a", views[1])
      assert.are.equal("p_d", views[4])
      table.sort(views)
      assert.are.same({ "p_a", "p_b", "p_c", "p_d" }, views)
      r = H.mv("refresh p_b --downstream --yes --json")
      views = {}
      for i, x in ipairs(mv.json.decode(r.out)) do views[i] = x.view end
      assert.are.same({ "p_b", "p_d" }, views)
    end)

    it("rejects a bad --parallel count as a usage error", function()
      local r = H.mv("refresh --all --parallel 0 --yes")
      assert.are.equal(2, r.code)
      assert.matches("%-%-parallel takes a whole number of at least 1", r.err)
    end)
  end)
end)
