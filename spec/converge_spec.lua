-- `matviews apply` converges the database to the files (issue 11, items 2
-- and 3): a fresh database created in dependency order by one apply, a
-- second apply that does nothing, a SQL change replaced with its
-- dependents rebuilt (whatever the strategy), a change dropping a column a
-- dependent reads refused before anything changes, plan as the exact
-- preview with its exit codes, and --prune with and without dependents.
local H = require "spec.helper"
local mv = require "matviews"

local function runs(tbl)
  return mv.query("SELECT count(*)::int AS n FROM " .. tbl)[1].n
end

local defs_dir = H.defs_dir

-- The catalog and the views as one comparable snapshot.
local function snapshot()
  local out = {}
  for _, r in ipairs(mv.query([[SELECT schema_name || '.' || name || ':' || md5(sql) AS s FROM mat_view_definitions
      ORDER BY 1]])) do out[#out + 1] = r.s end
  for _, r in ipairs(mv.query([[SELECT schemaname || '.' || matviewname || ':' || md5(definition) AS s
      FROM pg_matviews ORDER BY 1]])) do out[#out + 1] = r.s end
  out[#out + 1] = "runs:" .. runs("mat_view_create_runs") .. "/" .. runs("mat_view_delete_runs")
  return table.concat(out, "\n")
end

-- Five views in two schemas; the names sort against the dependency order.
local FIVE = {
  ["a.lua"] = [[
view "a_top" { sql = "SELECT n, n * 2 AS d FROM sales.m_mid" }
view "sales.b_leaf" { sql = "SELECT count(*) AS c FROM public.a_top" }
]],
  ["b.lua"] = [[
view "sales.m_mid" { sql = "SELECT n FROM public.z_base WHERE n > 1" }
view "z_base" { sql = "SELECT g AS n FROM generate_series(1, 5) g", strategy = "concurrent", unique = { "n" } }
view "sales.c_alone" { sql = "SELECT 1 AS one" }
]],
}

-- b.lua after the change that adds a column to z_base.
local B2 = FIVE["b.lua"]:gsub("SELECT g AS n FROM generate_series%(1, 5%) g",
  "SELECT g AS n, g * 100 AS hundred FROM generate_series(1, 6) g")

describe("matviews apply", function()
  local dir

  setup(function()
    H.fresh_db()
    mv.exec("CREATE SCHEMA sales")
    dir = defs_dir(FIVE)
  end)

  it("creates five views in two schemas on a fresh database, in dependency order, with create runs", function()
    local r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    local order = {}
    for line in r.out:gmatch("create ([%w_.]+): done") do order[#order + 1] = line end
    assert.are.same({ "sales.c_alone", "z_base", "sales.m_mid", "a_top", "sales.b_leaf" }, order)
    assert.are.equal(4, mv.query("SELECT c FROM sales.b_leaf")[1].c)
    assert.are.equal(5, runs("mat_view_create_runs"))
    assert.are.equal(0, mv.query("SELECT count(*)::int AS n FROM mat_view_create_runs WHERE status <> 2")[1].n)
  end)

  it("does nothing the second time: no runs, says so, exit 0; plan is in sync", function()
    local before = snapshot()
    local r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.same({ 0, "nothing to do\n", "" }, { r.code, r.out, r.err })
    assert.are.equal(before, snapshot())
    r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.same({ 0, "in sync\n" }, { r.code, r.out })
  end)

  it("replaces a concurrent view whose SQL adds a column; a plain view and a materialized view reading it are rebuilt", function()
    mv.exec("CREATE VIEW public.v_base AS SELECT n FROM public.z_base")
    mv.exec("GRANT SELECT ON public.z_base TO PUBLIC")
    mv.exec("COMMENT ON MATERIALIZED VIEW public.z_base IS 'kept'")
    H.write(dir .. "/b.lua", B2)
    local r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.equal(1, r.code, r.err)
    assert.are.equal([[
save z_base (sql)
replace z_base: SQL changed, columns added: hundred
  rebuild dependent sales.m_mid (materialized view)
  rebuild dependent public.v_base (view)
  rebuild dependent public.a_top (materialized view)
  rebuild dependent sales.b_leaf (materialized view)
note: a replace builds the new SQL beside the live view; readers wait only for the final swap transaction (bounded by lock_timeout_ms), never for the build
drift: 6 actions
]], r.out)
    r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.equal(600, mv.query("SELECT hundred FROM z_base WHERE n = 6")[1].hundred)
    assert.are.equal(6, mv.query("SELECT count(*)::int AS n FROM v_base")[1].n)
    assert.are.equal(5, mv.query("SELECT count(*)::int AS n FROM sales.m_mid")[1].n)
    assert.are.equal(5, mv.query("SELECT c FROM sales.b_leaf")[1].c)
    assert.are.equal("kept", mv.query("SELECT obj_description('public.z_base'::regclass, 'pg_class') AS c")[1].c)
    assert.is_true(mv.query("SELECT has_table_privilege('public', 'public.z_base', 'SELECT') AS ok")[1].ok)
    assert.are.equal(1, #mv.query("SELECT 1 FROM pg_indexes WHERE tablename = 'z_base' AND indexdef LIKE 'CREATE UNIQUE%'"))
    local run = mv.query([[SELECT r.status, r.meta->>'replaced' AS replaced FROM mat_view_create_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE d.name = 'z_base' ORDER BY r.id DESC LIMIT 1]])[1]
    assert.are.same({ 2, "true" }, { run.status, run.replaced })
    assert.are.equal("updated", mv.services.concurrent_refresh("z_base").status)
    r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.same({ 0, "nothing to do\n" }, { r.code, r.out })
  end)

  it("orders a new view after what it reads through a plain view; mv.plan and mv.apply give the CLI's actions", function()
    mv.exec("CREATE VIEW public.v_top AS SELECT n, d FROM public.a_top")
    H.write(dir .. "/c.lua", 'view "sales.a_via_view" { sql = "SELECT count(*) AS c FROM public.v_top" }\n')
    local cli = mv.json.decode(H.mv("--json plan --definitions " .. H.q(dir)).out)
    local p = mv.plan({ definitions = dir })
    local lines = {}
    for i, a in ipairs(p.actions) do lines[i] = a.line end
    local cli_lines = {}
    for i, a in ipairs(cli.actions) do cli_lines[i] = a.line end
    assert.are.same({ "save sales.a_via_view (new)", "create sales.a_via_view" }, lines)
    assert.are.same(lines, cli_lines)
    local r = mv.apply({ definitions = dir })
    assert.is_true(r.ok)
    assert.are.same({ "success", "success" }, { r.actions[1].status, r.actions[2].status })
    assert.are.equal(5, mv.query("SELECT c FROM sales.a_via_view")[1].c)
    local deps = H.mv("deps --dot")
    assert.matches('"a_top" -> "a_via_view"', deps.out, 1, true)
    assert.are.equal(0, #mv.plan({ definitions = dir }).actions)
  end)

  it("refuses before changing anything a SQL change that drops a column a dependent reads", function()
    local before = snapshot()
    H.write(dir .. "/b.lua", (FIVE["b.lua"]:gsub("SELECT g AS n FROM generate_series%(1, 5%) g",
      "SELECT g AS m, g * 100 AS hundred FROM generate_series(1, 6) g"):gsub('unique = { "n" }', 'unique = { "m" }')))
    for _, cmd in ipairs({ "plan", "apply" }) do
      local r = H.mv(cmd .. " --definitions " .. H.q(dir))
      assert.are.equal(2, r.code, cmd)
      assert.matches("b.lua:2: view 'z_base': cannot replace: dependent public.v_base reads column n, which the new SQL drops\n", r.err, 1, true)
      assert.matches("dependent sales.m_mid reads column n", r.err, 1, true)
      assert.are.equal(before, snapshot())
    end
  end)

  it("exits 2 and applies nothing for invalid input, naming file and line", function()
    local before = snapshot()
    local cases = {
      { 'view "sales.c_bad" { sql = "SELECT 1 AS one FROM no_such_table" }\n', "a.lua:1: view 'sales.c_bad': SQL does not plan: relation \"no_such_table\" does not exist" },
      { 'view "c_x" { sql = "SELECT 1 AS one", depends_on = { "mv_zzz" } }\n', "a.lua:1: view 'c_x': view c_x declares a dependency on \"mv_zzz\", which is not a defined view" },
      { 'view "nowhere.c_x" { sql = "SELECT 1 AS one" }\n', "a.lua:1: view 'nowhere.c_x': schema nowhere does not exist" },
      { 'view "c_x" { sql = "SELECT 1 AS one", indexes = { { "zz" } } }\n', "a.lua:1: view 'c_x': index c_x_zz_idx: column \"zz\" does not exist" },
      { 'view "c_x" { sql = "SELECT 1 AS one", depends_on = { "c_y" } }\nview "c_y" { sql = "SELECT 1 AS one", depends_on = { "c_x" } }\n', "dependency cycle" },
      { 'view "' .. ("x"):rep(64) .. '" { sql = "SELECT 1" }\n', "is 64 bytes long (at most 63)" },
      { 'view "c_x" { sql = "SELECT 1" \n', "a.lua:" },
    }
    for _, c in ipairs(cases) do
      local d = defs_dir({ ["a.lua"] = c[1], ["b.lua"] = FIVE["b.lua"] })
      local r = H.mv("apply --definitions " .. H.q(d))
      assert.are.equal(2, r.code, c[1] .. r.out .. r.err)
      assert.matches(c[2], r.err, 1, true)
      assert.are.equal(before, snapshot())
      assert.are.equal(2, H.mv("plan --definitions " .. H.q(d)).code)
    end
  end)

  it("--prune drops a removed view; refuses one others read unless --cascade; runs stay", function()
    local id = mv.definitions.get("sales.c_alone").id
    H.write(dir .. "/b.lua", (B2:gsub('view "sales.c_alone"[^\n]*\n', "")))
    local r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.same({ 0, "note: sales.c_alone has a definition but no file (apply --prune drops it)\nin sync\n" }, { r.code, r.out })
    r = H.mv("--yes apply --prune --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.matches("drop sales.c_alone: done", r.out, 1, true)
    assert.are.equal(0, #mv.query("SELECT 1 FROM pg_matviews WHERE matviewname = 'c_alone'"))
    assert.are.equal(1, mv.query("SELECT count(*)::int AS n FROM mat_view_create_runs WHERE mat_view_definition_id = $1", id)[1].n)
    assert.are.equal(1, mv.query("SELECT count(*)::int AS n FROM mat_view_delete_runs WHERE mat_view_definition_id = $1", id)[1].n)

    mv.exec("CREATE VIEW public.v_leaf AS SELECT c FROM sales.b_leaf")
    H.write(dir .. "/a.lua", 'view "a_top" { sql = "SELECT n, n * 2 AS d FROM sales.m_mid" }\n')
    local before = snapshot()
    r = H.mv("--yes apply --prune --definitions " .. H.q(dir))
    assert.are.equal(2, r.code)
    assert.matches("apply --prune would drop sales.b_leaf, which public.v_leaf reads: add --cascade to drop it too", r.err, 1, true)
    assert.are.equal(before, snapshot())
    r = H.mv("--yes apply --prune --cascade --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.equal(0, #mv.query("SELECT 1 FROM pg_class WHERE relname IN ('b_leaf', 'v_leaf')"))
    assert.are.same({ 0, "in sync\n" }, { H.mv("plan --prune --definitions " .. H.q(dir)).code, H.mv("plan --prune --definitions " .. H.q(dir)).out })
  end)
end)

describe("create --all on a fresh database", function()
  it("creates in the order the definitions need, not the names' (rehearsed, as apply does)", function()
    H.fresh_db("converge_create_all")
    mv.exec("CREATE SCHEMA sales")
    local dir = defs_dir(FIVE)
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. H.q(dir)).code)
    local r = H.mv("--yes create --all")
    assert.are.equal(0, r.code, r.out .. r.err)
    local order = {}
    for name in r.out:gmatch("create ([%w_.]+): success") do order[#order + 1] = name end
    assert.are.same({ "c_alone", "z_base", "m_mid", "a_top", "b_leaf" }, order)
  end)
end)
