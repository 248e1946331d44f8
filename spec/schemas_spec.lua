-- A definition knows its schema (issue 11, item 1): the catalog stores
-- schema_name, unique with the name; the DSL says `view "s.n"` or
-- `schema = "s"`; analytics.mv_x and public.mv_x are defined and operated
-- side by side, by --parallel and by the worker, whatever the search_path;
-- a plain ambiguous name is a usage error naming both; an old catalog
-- upgrades in place from where each view lives.
local H = require "spec.helper"
local mv = require "matviews"

-- The rows of schema.rel, as one sorted string ("1,2,3").
local function contents(schema, rel)
  local out = {}
  for _, r in ipairs(mv.query(("SELECT x FROM %s.%s ORDER BY x"):format(schema, rel))) do out[#out + 1] = r.x end
  return table.concat(out, ",")
end

describe("definitions in schemas", function()
  local dir

  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE SCHEMA analytics")
    mv.exec("CREATE TABLE public.src (x int)")
    mv.exec("CREATE TABLE analytics.src (x int)")
    dir = H.tmpfile("_defs")
    os.execute("mkdir -p " .. H.q(dir))
    H.write(dir .. "/a.lua", [[
view "analytics.mv_x" { sql = "SELECT x FROM analytics.src" }
view "mv_x" { sql = "SELECT x * 10 AS x FROM public.src" }
view "mv_y" { schema = "analytics", sql = "SELECT x FROM analytics.mv_x" }
]])
  end)

  it("stores the schema of `view \"s.n\"`, `schema = ...` and the default", function()
    local r = H.mv("apply --catalog-only --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.err)
    local rows = mv.query("SELECT schema_name || '.' || name AS q FROM mat_view_definitions ORDER BY 1")
    assert.are.same({ "analytics.mv_x", "analytics.mv_y", "public.mv_x" }, { rows[1].q, rows[2].q, rows[3].q })
  end)

  it("refuses a plain name defined in two schemas, naming both (exit 2)", function()
    local r = H.mv("--yes refresh mv_x")
    assert.are.equal(2, r.code)
    assert.are.equal("the name mv_x is ambiguous: it is defined as analytics.mv_x and public.mv_x; qualify it (schema.name)",
      H.usage_message(r.err))
    local ok, e = pcall(mv.refresh, "mv_x")
    assert.is_false(ok)
    assert.matches("ambiguous", e.message)
  end)

  it("creates and refreshes both with --all --parallel 2, each in its schema", function()
    mv.exec("INSERT INTO public.src VALUES (1), (2)")
    mv.exec("INSERT INTO analytics.src VALUES (5)")
    local r = H.mv("--yes create --all")
    assert.are.equal(0, r.code, r.out .. r.err)
    mv.exec("INSERT INTO public.src VALUES (3)")
    mv.exec("INSERT INTO analytics.src VALUES (6)")
    r = H.mv("--yes refresh --all --parallel 2", { env = { PGOPTIONS = "-c search_path=analytics,public" } })
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.equal("10,20,30", contents("public", "mv_x"))
    assert.are.equal("5,6", contents("analytics", "mv_x"))
    assert.are.equal("5,6", contents("analytics", "mv_y"))
    local views = {}
    for _, row in ipairs(mv.query([[SELECT meta->>'view' AS v FROM mat_view_refresh_runs WHERE status = 2 ORDER BY 1]])) do
      views[#views + 1] = row.v
    end
    assert.are.same({ "analytics.mv_x", "analytics.mv_y", "public.mv_x" }, views)
  end)

  it("refreshes each through the worker, whatever the worker's search_path", function()
    mv.exec("INSERT INTO public.src VALUES (4)")
    mv.exec("INSERT INTO analytics.src VALUES (7)")
    assert.are.equal(0, H.mv("enqueue refresh analytics.mv_x public.mv_x").code)
    local r = H.mv("worker --once", { env = { PGOPTIONS = "-c search_path=analytics,public" } })
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.equal("10,20,30,40", contents("public", "mv_x"))
    assert.are.equal("5,6,7", contents("analytics", "mv_x"))
  end)

  it("runs a script's definition in the schema it was saved in, whatever later sessions say", function()
    local code = [[
mv.exec("SET search_path TO analytics, public")
mv.definitions.save({ name = "mv_tag", sql = "SELECT 1 AS x" })
assert(mv.create("mv_tag").status == "success")
]]
    local r = H.mv("-e " .. H.q(code))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("analytics", mv.query("SELECT schema_name FROM mat_view_definitions WHERE name = 'mv_tag'")[1].schema_name)
    mv.exec("CREATE MATERIALIZED VIEW public.mv_tag AS SELECT 2 AS x") -- a decoy on the default path
    r = H.mv("-e " .. H.q([[local res = mv.refresh_all({ views = { "mv_tag" } }) assert(res.ok, res.status)]]))
    assert.are.equal(0, r.code, r.err)
    local run = mv.query([[SELECT meta->>'view' AS v FROM mat_view_refresh_runs r JOIN mat_view_definitions d
      ON d.id = r.mat_view_definition_id WHERE d.name = 'mv_tag' ORDER BY r.id DESC LIMIT 1]])[1]
    assert.are.equal("analytics.mv_tag", run.v)
  end)

  it("lists and graphs by schema: list shows each schema, deps reads the stored one", function()
    local r = H.mv("--json list")
    assert.are.equal(0, r.code, r.err)
    local by = {}
    for _, v in ipairs(mv.json.decode(r.out)) do by[v.view] = v end
    assert.are.equal("analytics", by["analytics.mv_x"].schema)
    assert.are.equal("public", by["public.mv_x"].schema)
    assert.is_true(by["analytics.mv_x"].exists)
    r = H.mv("deps --dot")
    assert.are.equal(0, r.code, r.err)
    assert.truthy(r.out:find('"analytics.mv_x" -> "mv_y"', 1, true), r.out)
  end)
end)

describe("upgrading a catalog without schema_name", function()
  it("fills the column from where each view lives", function()
    H.fresh_db("schemas_upgrade")
    mv.exec("CREATE SCHEMA elsewhere")
    -- the catalog as it was before step 7
    local catalog = require "matviews.catalog"
    local steps = catalog.steps
    catalog.steps = {}
    for _, s in ipairs(steps) do if s < "007" then catalog.steps[#catalog.steps + 1] = s end end
    mv.init()
    catalog.steps = steps
    mv.exec("CREATE MATERIALIZED VIEW elsewhere.mv_far AS SELECT 1 AS x")
    mv.exec("CREATE MATERIALIZED VIEW public.mv_near AS SELECT 1 AS x")
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ('mv_far', 'SELECT 1 AS x'), ('mv_near', 'SELECT 1 AS x'), ('mv_none', 'SELECT 1 AS x')")
    assert.are.same({ "007_definition_schema" }, (function()
      local applied = {}
      for _, s in ipairs(mv.init().applied) do if s <= "007_z" then applied[#applied + 1] = s end end
      return applied
    end)())
    local got = {}
    for _, r in ipairs(mv.query("SELECT name, schema_name FROM mat_view_definitions ORDER BY name")) do
      got[#got + 1] = r.name .. "=" .. r.schema_name
    end
    assert.are.same({ "mv_far=elsewhere", "mv_near=public", "mv_none=public" }, got)
    assert.are.equal("updated", mv.services.regular_refresh("mv_far").status)
  end)
end)
