-- Refresh strategies declared in Lua and write-audit-publish (issue 16): a
-- project whose matviews.lua and definition files declare strategies; the
-- views are applied, then refreshed through the CLI, the worker and
-- parallel refresh.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local project

-- Writes the project: matviews.lua (a strategy) and definitions/*.lua.
local function write_project(files)
  local dir = H.tmpfile("_strategies")
  os.execute("mkdir -p " .. H.q(dir .. "/definitions"))
  H.write(dir .. "/matviews.lua", files.config or "")
  for name, text in pairs(files.defs) do H.write(dir .. "/definitions/" .. name, text) end
  return dir
end

-- Runs the host in the project (its matviews.lua).
local function run(args, opts)
  return H.mv("--config " .. H.q(project .. "/matviews.lua") .. " " .. args, opts)
end

local function last_run(view)
  local rows = P.runs("refresh", view)
  return rows[#rows]
end

describe("refresh strategies", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE orders (id int PRIMARY KEY, user_id int, total int)")
    mv.exec("INSERT INTO orders SELECT g, g % 5, g * 10 FROM generate_series(1, 20) g")
    project = write_project({
      config = [[
strategy "vacuumed" (function(ctx)
  ctx:refresh()
  ctx:exec("VACUUM ANALYZE " .. ctx.view)
  return { vacuumed = true, args = ctx.args.note }
end)
]],
      defs = {
        ["a_strategies.lua"] = [[
strategy "broken" (function(ctx)
  ctx:build()
  error("the upstream feed is late")
end)
]],
        ["b_views.lua"] = [[
view "st_guarded" {
  sql = "SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id",
  strategy = "swap", unique = { "user_id" },
  audit = { min_rows = 1, max_row_change = 0.5, not_null = { "user_id" }, unique = { "user_id" },
            sql = { "select count(*) = 0 from {new} where total < 0" } },
}
view "st_reader" { sql = "SELECT count(*) AS n FROM st_guarded", depends_on = { "st_guarded" } }
view "st_vacuumed" { sql = "SELECT id FROM orders", strategy = "vacuumed" }
view "st_broken" { sql = "SELECT id FROM orders", strategy = "broken" }
]],
      },
    })
    local r = run("apply")
    assert.are.equal(0, r.code, r.err .. r.out)
    for _, v in ipairs({ "st_guarded", "st_reader", "st_vacuumed", "st_broken" }) do
      if mv.query("SELECT to_regclass($1) IS NULL AS missing", v)[1].missing then -- apply may have made it
        r = run("--yes create " .. v)
        assert.are.equal(0, r.code, r.err .. r.out)
      end
    end
  end)

  it("publishes a build whose audits pass, and records every check", function()
    local r = run("--yes refresh st_guarded")
    assert.are.equal(0, r.code, r.err .. r.out)
    local run_row = last_run("st_guarded")
    assert.are.equal(2, run_row.status)
    local checks = {}
    for _, c in ipairs(run_row.meta.audit) do checks[#checks + 1] = c.check .. "=" .. tostring(c.passed) end
    assert.are.same({ "min_rows=true", "max_row_change=true", "not_null=true", "unique=true", "sql=true" }, checks)
  end)

  it("keeps the old contents when an audit fails after the source is emptied", function()
    local before = mv.query("SELECT count(*) AS n FROM st_guarded")[1].n
    local reader = mv.query("SELECT n FROM st_reader")[1].n
    mv.exec("DELETE FROM orders")
    local r = run("--yes refresh st_guarded")
    mv.exec("INSERT INTO orders SELECT g, g % 5, g * 10 FROM generate_series(1, 20) g")
    assert.are.equal(1, r.code)
    assert.matches("audit failed: rows 0 < min_rows 1; the old contents stay", r.out, 1, true)
    local run_row = last_run("st_guarded")
    assert.are.same({ 3, "audit failed: rows 0 < min_rows 1; the old contents stay" }, { run_row.status, run_row.error })
    assert.are.same({ check = "min_rows", passed = false, rows = 0 }, { check = run_row.meta.audit[1].check,
      passed = run_row.meta.audit[1].passed, rows = run_row.meta.audit[1].rows })
    assert.are.equal(before, mv.query("SELECT count(*) AS n FROM st_guarded")[1].n)
    assert.are.equal(reader, mv.query("SELECT n FROM st_reader")[1].n)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_st\\_guarded%'"))
  end)

  it("runs a user strategy that refreshes then vacuums, with its result in meta", function()
    local r = run("-e " .. H.q([[local run = mv.refresh("st_vacuumed", { args = { note = "nightly" } })
      print(run.status, run.meta.strategy, run.meta.result.vacuumed, run.meta.result.args)]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("success\tvacuumed\ttrue\tnightly\n", r.out)
    local n = mv.query("SELECT vacuum_count + autovacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'st_vacuumed'")
    assert.is_true(#n == 0 or n[1].n >= 0)
  end)

  it("fails a strategy that raises: the build dropped, the lock released, the place named", function()
    local r = run("--yes refresh st_broken")
    assert.are.equal(1, r.code)
    local run_row = last_run("st_broken")
    assert.are.equal(3, run_row.status)
    assert.matches('^strategy "broken" %(.-a_strategies%.lua:1%) failed: .-a_strategies%.lua:3: the upstream feed is late$',
      run_row.error)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_st\\_broken%'"))
    assert.are.same({}, mv.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"))
  end)

  it("goes through parallel refresh and the worker", function()
    local r = run("--yes refresh st_vacuumed st_guarded --parallel 2 --arg note=from-cli")
    assert.are.equal(0, r.code, r.err .. r.out)
    assert.are.same({ "vacuumed", "from-cli" }, { last_run("st_vacuumed").meta.strategy, last_run("st_vacuumed").meta.result.args })
    r = run("enqueue refresh st_vacuumed")
    assert.are.equal(0, r.code, r.err .. r.out)
    r = run("worker --once")
    assert.are.equal(0, r.code, r.err .. r.out)
    local row = last_run("st_vacuumed")
    assert.are.same({ 2, "vacuumed", true }, { row.status, row.meta.strategy, row.meta.result.vacuumed })
  end)

  it("refuses publish without build, and a second publish", function()
    local r = run("-e " .. H.q([[
      local s = require("matviews.strategies")
      s.define("twice", function(ctx) ctx:build() ctx:publish() ctx:publish() end, "t.lua", 1)
      s.define("nobuild", function(ctx) ctx:publish() end, "t.lua", 2)
      mv.exec("UPDATE mat_view_definitions SET options = options || '{\"strategy\": \"twice\"}' WHERE name = 'st_vacuumed'")
      print(mv.refresh("st_vacuumed").error)
      mv.exec("UPDATE mat_view_definitions SET options = options || '{\"strategy\": \"nobuild\"}' WHERE name = 'st_vacuumed'")
      print(mv.refresh("st_vacuumed").error)
      mv.exec("UPDATE mat_view_definitions SET options = options || '{\"strategy\": \"vacuumed\"}' WHERE name = 'st_vacuumed'")]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('strategy "twice" (t.lua:1) failed: publish: the build is already published (publish once)\n'
      .. 'strategy "nobuild" (t.lua:2) failed: publish: nothing built to publish (call ctx:build() first)\n', r.out)
  end)

  it("stops a strategy that loops forever with the instruction budget: run failed, build dropped, lock released", function()
    local cfg = H.write(project .. "/budget.lua", ('definitions = %q\nuser_code_budget = 2000000\n'):format(project .. "/definitions")
      .. 'strategy "forever" (function(ctx) ctx:build() while true do end end)\n')
    local r = H.mv("--config " .. H.q(cfg) .. " -e " .. H.q([[
      mv.exec("UPDATE mat_view_definitions SET options = options || '{\"strategy\": \"forever\"}' WHERE name = 'st_vacuumed'")
      local run = mv.refresh("st_vacuumed")
      mv.exec("UPDATE mat_view_definitions SET options = options || '{\"strategy\": \"vacuumed\"}' WHERE name = 'st_vacuumed'")
      print(run.status, run.error)]]))
    assert.are.equal(0, r.code, r.err)
    assert.matches('^failed\tstrategy "forever" %(.-budget%.lua:3%) failed: .*budget', r.out)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_st\\_vacuumed%'"))
    assert.are.same({}, mv.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"))
  end)

  it("refuses an unknown strategy in plan and apply, with file and line", function()
    local bad = write_project({ defs = { ["x.lua"] = 'view "st_unknown" { sql = "SELECT 1 AS x", strategy = "nosuch" }\n' } })
    for _, cmd in ipairs({ "plan", "apply" }) do
      local r = H.mv("--config " .. H.q(bad .. "/matviews.lua") .. " " .. cmd)
      assert.are_not.equal(0, r.code)
      assert.matches("x%.lua:1: view 'st_unknown': unknown strategy \"nosuch\"", r.err .. r.out)
    end
  end)
end)
