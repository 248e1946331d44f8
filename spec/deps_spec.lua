-- The dependency graph: edges found in the database (directly and through
-- plain views) merged with declared dependencies; `matviews deps` as a
-- table, --json and --dot; cycles and unknown names as errors.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- Inserts a definition row (the catalog as the services would leave it).
local function define(name, sql, dependencies)
  mv.exec([[INSERT INTO mat_view_definitions (name, sql, dependencies) VALUES ($1, $2, $3::jsonb)
            ON CONFLICT (schema_name, name) DO UPDATE SET sql = EXCLUDED.sql, dependencies = EXCLUDED.dependencies]],
    name, sql, cjson.encode(dependencies or {}))
end

describe("matviews deps", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE base (id int, grp int)")
    local views = {
      { "mv_a", "SELECT id, grp FROM base" },
      { "mv_b", "SELECT grp, count(*) AS n FROM v_a GROUP BY grp" },     -- reads mv_a through v_a, v_a2
      { "mv_c", "SELECT id FROM mv_a WHERE id > 1" },                     -- reads mv_a directly
      { "mv_d", "SELECT 1 AS one", { "mv_c" } },                          -- declared only
      { "mv_e", "SELECT count(*) AS n FROM base" },                       -- independent
    }
    mv.exec("CREATE MATERIALIZED VIEW mv_a AS SELECT id, grp FROM base")
    mv.exec("CREATE VIEW v_a2 AS SELECT * FROM mv_a")
    mv.exec("CREATE VIEW v_a AS SELECT * FROM v_a2")
    for _, v in ipairs(views) do
      if v[1] ~= "mv_a" then mv.exec("CREATE MATERIALIZED VIEW " .. v[1] .. " AS " .. v[2]) end
      define(v[1], v[2], v[3])
    end
    mv.exec("CREATE MATERIALIZED VIEW unmanaged AS SELECT * FROM mv_e") -- no definition: not in the graph
  end)

  it("finds edges in the database, through plain views, and merges declared ones", function()
    local r = H.mv("deps --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.same({
      { from = "mv_a", to = "mv_b", sources = { "catalog" } },
      { from = "mv_a", to = "mv_c", sources = { "catalog" } },
      { from = "mv_c", to = "mv_d", sources = { "declared" } },
    }, doc.edges)
    local order = {}
    for _, v in ipairs(doc.views) do order[#order + 1] = v.name end
    assert.are.same({ "mv_a", "mv_b", "mv_c", "mv_d", "mv_e" }, order)
    assert.are.same({}, doc.views[1].upstream)
    assert.are.same({ "mv_b", "mv_c" }, doc.views[1].downstream)
    assert.matches('"upstream":%[%]', r.out) -- empty lists are JSON arrays
  end)

  it("prints the graph as a table, all of it or around one view", function()
    local r = H.mv("deps")
    assert.are.equal(0, r.code)
    assert.are.equal(table.concat({
      "view  reads  read by",
      "----  -----  ----------",
      "mv_a         mv_b, mv_c",
      "mv_b  mv_a",
      "mv_c  mv_a   mv_d",
      "mv_d  mv_c",
      "mv_e",
      "" }, "\n"), r.out)
    r = H.mv("deps mv_c")
    assert.are.equal(table.concat({
      "view  reads  read by",
      "----  -----  -------",
      "mv_a         mv_c",
      "mv_c  mv_a   mv_d",
      "mv_d  mv_c",
      "" }, "\n"), r.out)
  end)

  it("prints Graphviz dot with edges upstream -> downstream", function()
    local r = H.mv("deps --dot")
    assert.are.equal(0, r.code)
    assert.are.equal(table.concat({
      "digraph matviews {",
      "  rankdir=LR;",
      '  "mv_a";', '  "mv_b";', '  "mv_c";', '  "mv_d";', '  "mv_e";',
      '  "mv_a" -> "mv_b";',
      '  "mv_a" -> "mv_c";',
      '  "mv_c" -> "mv_d" [style=dashed];',
      "}", "" }, "\n"), r.out)
    r = H.mv("deps mv_b --dot")
    assert.are.equal('digraph matviews {\n  rankdir=LR;\n  "mv_a";\n  "mv_b";\n  "mv_a" -> "mv_b";\n}\n', r.out)
  end)

  it("gives the dependency order and closures to Lua", function()
    local deps = require "matviews.deps"
    local g = deps.load()
    assert.are.same({ "mv_a", "mv_b", "mv_c", "mv_d", "mv_e" }, deps.order(g))
    assert.are.same({ mv_a = true, mv_c = true }, deps.closure(g, "mv_d", "upstream"))
    assert.are.same({ mv_b = true, mv_c = true, mv_d = true }, deps.closure(g, "mv_a", "downstream"))
  end)

  it("fails on an unknown view name, as a usage error", function()
    local r = H.mv("deps nope")
    assert.are.equal(2, r.code)
    assert.are.equal('no definition named nope', H.usage_message(r.err))
  end)

  it("names a cycle in declared dependencies", function()
    define("mv_a", "SELECT id, grp FROM base", { "mv_d" })
    local r = H.mv("deps")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: dependency cycle: mv_a -> mv_c -> mv_d -> mv_a\n", r.err)
    define("mv_a", "SELECT id, grp FROM base", {})
    define("x1", "SELECT 1", { "x2" })
    define("x2", "SELECT 1", { "x1" })
    r = H.mv("deps --dot")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: dependency cycle: x1 -> x2 -> x1\n", r.err)
    mv.exec("DELETE FROM mat_view_definitions WHERE name IN ('x1', 'x2')")
  end)

  it("rejects a declared dependency on an unknown view", function()
    define("mv_d", "SELECT 1 AS one", { "mv_zz" })
    local r = H.mv("deps")
    assert.are.equal(1, r.code)
    assert.are.equal('matviews: view mv_d declares a dependency on "mv_zz", which is not a defined view\n', r.err)
    define("mv_d", "SELECT 1 AS one", { "mv_c" })
    assert.are.equal(0, H.mv("deps").code)
  end)
end)
