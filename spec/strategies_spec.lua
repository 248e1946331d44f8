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

-- How many times VACUUM ran on relation name (0 before the first).
local function vacuum_count(name)
  local r = mv.query("SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = $1", name)[1]
  return r and r.n or 0
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
    mv.exec("UPDATE orders SET total = total + 1 WHERE id = 1")
    local r = run("--yes refresh st_guarded")
    mv.exec("UPDATE orders SET total = total - 1 WHERE id = 1")
    assert.are.equal(0, r.code, r.err .. r.out)
    assert.are.equal(2101, mv.query("SELECT sum(total)::int AS t FROM st_guarded")[1].t) -- the new contents
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
    local vacuums = vacuum_count("st_vacuumed")
    local r = run("-e " .. H.q([[local run = mv.refresh("st_vacuumed", { args = { note = "nightly" } })
      print(run.status, run.meta.strategy, run.meta.result.vacuumed, run.meta.result.args)]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("success\tvacuumed\ttrue\tnightly\n", r.out)
    assert.are.equal(vacuums + 1, vacuum_count("st_vacuumed"))
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
    r = run("enqueue refresh st_vacuumed --arg note=queued")
    assert.are.equal(0, r.code, r.err .. r.out)
    r = run("worker --once")
    assert.are.equal(0, r.code, r.err .. r.out)
    local row = last_run("st_vacuumed")
    assert.are.same({ 2, "vacuumed", true, "queued" },
      { row.status, row.meta.strategy, row.meta.result.vacuumed, row.meta.result.args })
    r = run("enqueue create st_vacuumed --arg note=x")
    assert.are.equal(2, r.code)
    assert.matches("%-%-arg is for refresh jobs", r.err)
  end)

  -- Refreshes st_vacuumed once with the strategy name, declared at t.lua:1
  -- by src (the source of a function(ctx)), with the options over its own
  -- (a table), then puts its own back; prints print_expr (`run` is the run).
  local function refresh_with(name, src, print_expr, options)
    local o = { strategy = name }
    for k, v in pairs(options or {}) do o[k] = v end
    return run("-e " .. H.q(([[
      require("matviews.strategies").define(%q, %s, "t.lua", 1)
      local sql = "UPDATE mat_view_definitions SET options = options - 'statement_timeout_ms' - 'analyze' || $1::jsonb WHERE name = 'st_vacuumed'"
      mv.exec(sql, mv.json.decode(%q))
      local run = mv.refresh("st_vacuumed")
      mv.exec(sql, { strategy = "vacuumed" })
      print(%s)]]):format(name, src, mv.json.encode(o), print_expr)))
  end

  it("fails a strategy that calls ctx:fail: the call's file and line, its details kept", function()
    local r = refresh_with("closed", [[function(ctx)
        ctx:build()
        ctx:fail("the books are closed", { until_hour = 6 })
      end]], "run.status, run.error, run.meta.error.details.until_hour")
    assert.are.equal(0, r.code, r.err)
    assert.matches('^failed\tstrategy "closed" %(t%.lua:1%) failed: %(command line%):3: the books are closed\t6\n$', r.out)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_st\\_vacuumed%'"))
  end)

  it("stops a strategy stuck in SQL with the statement timeout: run failed, build dropped, lock released", function()
    local r = refresh_with("stuck", [[function(ctx) ctx:build() ctx:query("SELECT pg_sleep(60)") end]],
      "run.status, run.error", { statement_timeout_ms = 1000 })
    assert.are.equal(0, r.code, r.err)
    assert.matches('^failed\tstrategy "stuck" %(t%.lua:1%) failed: canceling statement due to statement timeout\n$', r.out)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_st\\_vacuumed%'"))
    assert.are.same({}, mv.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"))
  end)

  it("wraps the built-in swap: the view published, then vacuumed", function()
    mv.exec("UPDATE orders SET id = id + 100 WHERE id = 1")
    local r = refresh_with("swap_vacuumed", [[function(ctx)
        local resp = ctx:strategy("swap")
        ctx:exec("VACUUM ANALYZE " .. ctx.view)
        return { published = resp.success }
      end]], "run.status, run.meta.result.published")
    mv.exec("UPDATE orders SET id = id - 100 WHERE id = 101")
    assert.are.equal("success\ttrue\n", r.out, r.err)
    assert.are.equal(1, #mv.query("SELECT 1 FROM st_vacuumed WHERE id = 101"))
    assert.are.equal(1, vacuum_count("st_vacuumed")) -- the swapped-in relation is new: its one VACUUM
  end)

  it("builds with the view's analyze option, as swap_refresh does", function()
    local r = refresh_with("swap_plain", 'function(ctx) return ctx:strategy("swap") end',
      "run.status, tostring(run.meta.response.analyze_ms), tostring(run.meta.request.analyze)", { analyze = false })
    assert.are.equal("success\tnil\tfalse\n", r.out, r.err)
    r = refresh_with("swap_plain", 'function(ctx) return ctx:strategy("swap") end',
      "run.status, math.type(run.meta.response.analyze_ms), tostring(run.meta.request.analyze)")
    assert.are.equal("success\tinteger\ttrue\n", r.out, r.err)
  end)

  it("retries a user strategy whose failure a new attempt may fix", function()
    local r = refresh_with("flaky", [[function(ctx)
        tries = (tries or 0) + 1
        if tries == 1 then error({ message = "could not serialize access", sqlstate = "40001" }) end
        ctx:refresh()
        return { tries = tries }
      end]], "run.status, run.meta.result.tries, #run.meta.attempts, run.meta.attempts[1].retry_reason")
    assert.are.equal("success\t2\t2\tserialization_failure\n", r.out, r.err)
  end)

  it("refuses ctx:build{ indexes = false }: publish keeps every index", function()
    local r = refresh_with("bare", "function(ctx) ctx:build{ indexes = false } end", "run.error")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal('strategy "bare" (t.lua:1) failed: build: indexes = false is not offered: publish keeps every '
      .. "index of the view, so the build has them\n", r.out)
  end)

  it("refuses publish without build, and a second publish", function()
    local r = refresh_with("twice", "function(ctx) ctx:build() ctx:publish() ctx:publish() end", "run.error")
    assert.are.equal('strategy "twice" (t.lua:1) failed: publish: the build is already published (publish once)\n',
      r.out, r.err)
    r = refresh_with("nobuild", "function(ctx) ctx:publish() end", "run.error")
    assert.are.equal('strategy "nobuild" (t.lua:1) failed: publish: nothing built to publish (call ctx:build() first)\n',
      r.out, r.err)
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

  it("refuses, in plan and apply, audits whose columns or SQL do not fit the view, with file and line", function()
    local bad = write_project({ defs = { ["x.lua"] = [[
view "st_audited" {
  sql = "SELECT user_id, total FROM orders",
  strategy = "swap",
  audit = {
    not_null = { "usr_id" },
    unique = { "user_id", "nope" },
    sql = { "select count(*) from {new}", "select true from {new} where totl > 0", "select count(*) = 0, 1 from {new}",
            "select count(*) = 0 from {new} where total < 0",
            "with d as (delete from orders returning 1) select count(*) = 0 from d" },
  },
}
view "st_regular_audit" { sql = "SELECT 1 AS x", audit = { min_rows = 1 } }
]] } })
    for _, cmd in ipairs({ "plan", "apply" }) do
      local r = H.mv("--config " .. H.q(bad .. "/matviews.lua") .. " " .. cmd)
      assert.are.equal(2, r.code, r.out .. r.err)
      local text = r.err .. r.out
      assert.matches("x%.lua:12: view 'st_regular_audit': key 'audit' checks a build before it is published, and "
        .. "strategy \"regular\" does not build", text)
      assert.is_nil(text:find("st_audited", 1, true), text) -- the first pass stops at the DSL error
    end
    H.write(bad .. "/definitions/x.lua", H.slurp(bad .. "/definitions/x.lua"):gsub('view "st_regular_audit"[^\n]*\n', ""))
    for _, cmd in ipairs({ "plan", "apply" }) do
      local r = H.mv("--config " .. H.q(bad .. "/matviews.lua") .. " " .. cmd)
      assert.are.equal(2, r.code, r.out .. r.err)
      local lines = {}
      for l in (r.err .. r.out):gmatch("[^\n]*x%.lua:%d+:[^\n]*") do lines[#lines + 1] = l:match("x%.lua:.*") end
      assert.are.same({
        "x.lua:5: view 'st_audited': audit not_null: the view has no column usr_id (columns: user_id, total)",
        "x.lua:6: view 'st_audited': audit unique: the view has no column nope (columns: user_id, total)",
        "x.lua:7: view 'st_audited': audit sql 1 must return exactly one boolean column, it returns (bigint): "
          .. "select count(*) from {new}",
        "x.lua:7: view 'st_audited': audit sql 2 does not plan (column \"totl\" does not exist): "
          .. "select true from {new} where totl > 0",
        "x.lua:7: view 'st_audited': audit sql 3 must return exactly one boolean column, it returns (boolean, integer): "
          .. "select count(*) = 0, 1 from {new}",
        "x.lua:7: view 'st_audited': audit sql 5 must only read (it writes: INSERT, UPDATE, DELETE or MERGE): "
          .. "with d as (delete from orders returning 1) select count(*) = 0 from d",
      }, lines)
    end
    -- in the session that planned: nothing prepared is left, nothing created
    local r0 = H.mv("--config " .. H.q(bad .. "/matviews.lua") .. " -e " .. H.q([[local p = mv.plan()
      print(#p.errors, #mv.query("SELECT 1 FROM pg_prepared_statements"))]]))
    assert.are.equal("6\t0\n", r0.out, r0.err)
    assert.are.same({}, mv.query("SELECT 1 FROM pg_class WHERE relname = 'st_audited'"))
    -- the project's own audits (st_guarded, live and unchanged) plan
    local r = run("plan")
    assert.are.equal(0, r.code, r.out .. r.err)
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

describe("an unknown strategy, wherever a strategy is named", function()
  local dir, cfg
  local UNKNOWN = "b%.lua:3: view 'st_late': unknown strategy \"late\" %(declared: concurrent, regular, swap%)"

  local function mvp(args, opts) return H.mv("--config " .. H.q(cfg) .. " " .. args, opts) end

  setup(function()
    H.fresh_db("strategies_unknown")
    mv.init()
    mv.exec("CREATE TABLE items (id int PRIMARY KEY)")
    mv.exec("INSERT INTO items SELECT generate_series(1, 5)")
    dir = write_project({ defs = {
      -- the view names a strategy that a file loaded after its own declares
      ["b.lua"] = 'view "st_late" {\n  sql = "SELECT id FROM items",\n  strategy = "late",\n'
        .. '  schedule = "* * * * *",\n}\nview "st_plain" { sql = "SELECT id FROM items" }\n',
      ["c_late.lua"] = 'strategy "late" (function(ctx) ctx:refresh() return { late = true } end)\n',
    } })
    cfg = dir .. "/matviews.lua"
    local r = mvp("apply")
    assert.are.equal(0, r.code, r.out .. r.err)
    r = mvp("--yes refresh st_late")
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.same({ late = true }, last_run("st_late").meta.result)
    -- the declaration goes away; the catalog still names it
    H.write(dir .. "/definitions/c_late.lua", "-- no strategy here any more\n")
  end)

  it("plan refuses the definition file, naming the line of its strategy key", function()
    local r = mvp("plan")
    assert.are.equal(2, r.code, r.out .. r.err)
    assert.matches(UNKNOWN, r.err .. r.out)
  end)

  it("list, stats and the report print what they show, then the error, and exit 1", function()
    local r = mvp("list")
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("st_late%s+public%s+late%s", r.out)
    assert.matches("^matviews: /.-" .. UNKNOWN .. "\n$", r.err)
    r = mvp("--json list")
    assert.are.equal(1, r.code, r.err)
    for _, row in ipairs(mv.json.decode(r.out)) do
      if row.view == "st_late" then assert.matches(UNKNOWN, row.strategy_error) else assert.is_nil(row.strategy_error) end
    end
    r = mvp("stats")
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("st_late", r.out)
    assert.matches("^matviews: /.-" .. UNKNOWN .. "\n$", r.err)
    assert.are.equal(0, mvp("stats st_plain").code) -- only the views it shows
    local page = H.tmpfile(".html")
    r = mvp("report --html " .. H.q(page))
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("^matviews: /.-" .. UNKNOWN .. "\n$", r.err)
    assert.matches('late <span class="bad" title="[^"]*b%.lua:3: view &#39;st_late&#39;: unknown strategy &quot;late&quot;',
      H.slurp(page))
  end)

  it("a refresh, refresh --all --parallel 2 and the worker fail the run with the file and line", function()
    local r = mvp("--yes refresh st_late")
    assert.are.equal(1, r.code)
    assert.matches(UNKNOWN, last_run("st_late").error)
    r = mvp("--yes refresh --all --parallel 2")
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches(UNKNOWN, last_run("st_late").error)
    assert.are.equal(2, last_run("st_plain").status)
    r = mvp("enqueue refresh st_late")
    assert.are.equal(0, r.code, r.out .. r.err)
    local before = #P.runs("refresh", "st_late")
    r = mvp("worker --once")
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("job %d+ refresh st_late: failed .-" .. UNKNOWN, r.out)
    assert.are.equal(before + 1, #P.runs("refresh", "st_late"))
  end)

  it("the scheduler reports it and queues nothing for that view", function()
    local clock = H.tmpfile(".clock")
    H.write(clock, tostring(mv.query("SELECT floor(extract(epoch FROM now()))::bigint + 180 AS t")[1].t))
    local jobs = mv.query("SELECT count(*) AS n FROM matviews_jobs")[1].n
    local r = mvp("scheduler --once --clock " .. H.q(clock))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.matches("matviews: schedule of st_late: /.-" .. UNKNOWN, r.err)
    assert.are.equal(jobs, mv.query("SELECT count(*) AS n FROM matviews_jobs")[1].n)
    r = mvp("schedule")
    assert.are.equal(1, r.code)
    assert.matches(UNKNOWN, r.err)
  end)

  it("a long-running process sees a strategy declared after it started (the files are read again)", function()
    local r = mvp("-e " .. H.q(([[
      local first = mv.refresh("st_late")
      local f = assert(io.open(%q, "w"))
      f:write('-- moved down\nstrategy "late" (function(ctx) ctx:refresh() return { again = true } end)\n')
      f:close()
      local second = mv.refresh("st_late")
      print(first.status, second.status, second.meta.result.again)]]):format(dir .. "/definitions/c_late.lua")))
    H.write(dir .. "/definitions/c_late.lua", "-- no strategy here any more\n")
    assert.are.equal("failed\tsuccess\ttrue\n", r.out, r.err)
  end)

  it("names the file when it says another strategy, and says when no file declares the view", function()
    H.write(dir .. "/definitions/b.lua", 'view "st_late" {\n  sql = "SELECT id FROM items",\n  strategy = "swap",\n}\n'
      .. 'view "st_plain" { sql = "SELECT id FROM items" }\n')
    local r = mvp("--yes refresh st_late")
    assert.are.equal(1, r.code)
    assert.matches("b%.lua:3: view 'st_late': unknown strategy \"late\" in the catalog, the file says \"swap\": run apply",
      last_run("st_late").error)
    H.write(dir .. "/definitions/b.lua", 'view "st_plain" { sql = "SELECT id FROM items" }\n')
    r = mvp("list")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: view 'st_late': unknown strategy \"late\" (no definition file declares the view, the "
      .. "catalog names the strategy; declared: concurrent, regular, swap)\n", r.err)
  end)

  it("refuses two declarations of one strategy, naming both places", function()
    local two = write_project({ config = '\nstrategy "dup" (function(ctx) ctx:refresh() end)\n', defs = {
      ["a.lua"] = 'strategy "twice" (function(ctx) ctx:refresh() end)\n',
      ["b.lua"] = '-- again\nstrategy "twice" (function(ctx) ctx:refresh() end)\nstrategy "dup" (function(ctx) end)\n',
    } })
    local r = H.mv("--config " .. H.q(two .. "/matviews.lua") .. " plan")
    assert.are.equal(2, r.code, r.out .. r.err)
    assert.matches('strategy "twice" is defined twice: /[^\n]-/a%.lua:1 and /[^\n]-/b%.lua:2', r.err .. r.out)
    assert.matches('strategy "dup" is defined twice: /[^\n]-/matviews%.lua:2 and /[^\n]-/b%.lua:3', r.err .. r.out)
  end)
end)

-- The two examples of the README section "Your own refresh strategy", run as
-- they are written there (read from README.md), so the README cannot drift.
describe("the README's strategy examples", function()
  -- The fenced blocks of kind (lua, sql) between heading and the next heading.
  local function blocks(heading, kind)
    local text = H.slurp("README.md")
    local at = assert(text:find("\n### " .. heading, 1, true), heading)
    local section = text:sub(at + 1):match("^(.-)\n##") or text:sub(at + 1)
    local out = {}
    for b in section:gmatch("```" .. kind .. "\n(.-)```") do out[#out + 1] = b end
    return out
  end

  local dir, cfg
  local function mvp(args) return H.mv("--config " .. H.q(cfg) .. " " .. args) end

  setup(function()
    H.fresh_db("strategies_readme")
    mv.init()
    mv.exec("CREATE TABLE orders (id int PRIMARY KEY, user_id int, total int)")
    mv.exec("INSERT INTO orders SELECT g, g % 5, g * 10 FROM generate_series(1, 20) g")
    mv.exec("CREATE TABLE events (id int PRIMARY KEY, kind text, at timestamptz)")
    mv.exec([[INSERT INTO events SELECT g, (ARRAY['a','b'])[1 + g % 2],
      timestamptz '2026-09-15 12:00Z' + (g % 3) * interval '1 month' FROM generate_series(1, 30) g]])
    for _, sql in ipairs(blocks("Partition by partition", "sql")) do mv.exec(sql) end
    local guarded = blocks("Write, audit, publish: a guarded swap", "lua")
    local by_month = blocks("Partition by partition", "lua")
    assert.are.same({ 1, 1 }, { #guarded, #by_month })
    dir = write_project({ defs = { ["revenue.lua"] = guarded[1], ["events_by_month.lua"] = by_month[1] } })
    cfg = dir .. "/matviews.lua"
    local r = mvp("apply")
    assert.are.equal(0, r.code, r.out .. r.err)
  end)

  it("the guarded swap publishes, then refuses an emptied source", function()
    local r = mvp("--yes refresh mv_revenue")
    assert.are.equal(0, r.code, r.out .. r.err)
    mv.exec("DELETE FROM orders")
    r = mvp("--yes refresh mv_revenue")
    assert.are.equal(1, r.code)
    assert.are.equal("audit failed: rows 0 < min_rows 1; the old contents stay", last_run("mv_revenue").error)
    assert.are.equal(5, mv.query("SELECT count(*) AS n FROM mv_revenue")[1].n)
  end)

  it("the partition-by-partition strategy rebuilds every month, or the one --arg names", function()
    local r = mvp("--yes refresh mv_events_by_month")
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.same({ months = 3 }, last_run("mv_events_by_month").meta.result)
    assert.are.same({ { p = "events_monthly_2026_09" }, { p = "events_monthly_2026_10" }, { p = "events_monthly_2026_11" } },
      mv.query("SELECT c.relname AS p FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        .. "WHERE i.inhparent = 'events_monthly'::regclass ORDER BY 1"))
    assert.are.same({ { month = "2026-09-01", events = 10 }, { month = "2026-10-01", events = 10 },
      { month = "2026-11-01", events = 10 } },
      mv.query("SELECT month::text AS month, events FROM mv_events_by_month ORDER BY 1"))
    mv.exec("UPDATE events SET at = timestamptz '2026-11-20 12:00Z' WHERE id <= 3")
    r = mvp("--yes refresh mv_events_by_month --arg month=2026-11")
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.same({ months = 1 }, last_run("mv_events_by_month").meta.result)
    -- November rebuilt (3 more), the months before left as they were
    assert.are.same({ { month = "2026-09-01", events = 10 }, { month = "2026-10-01", events = 10 },
      { month = "2026-11-01", events = 12 } },
      mv.query("SELECT month::text AS month, events FROM mv_events_by_month ORDER BY 1"))
  end)
end)
