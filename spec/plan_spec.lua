-- `matviews plan`: changes nothing; file vs catalog, catalog vs the live
-- view (missing, SQL changed as normalised by the server, indexes missing or
-- extra, grants differing); exit 0 in sync, 1 on drift.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function role(name)
  if #mv.query("SELECT 1 FROM pg_roles WHERE rolname = $1", name) == 0 then
    mv.exec("CREATE ROLE " .. mv.conn():quote_ident(name))
  end
end

local DEF = [[
view "mv_p" {
  sql = "select   id,  cat\n from items where id > 0",
  strategy = "concurrent", unique = { "id" },
  indexes = { { "cat" } },
  grants = { "mv_spec_reader" },
}
]]

describe("matviews plan", function()
  local dir
  setup(function()
    H.fresh_db()
    role("mv_spec_reader"); role("mv_spec_app")
    mv.exec("CREATE TABLE items (id int, cat text)")
    mv.exec("INSERT INTO items SELECT g, 'c' || (g % 3) FROM generate_series(1, 20) g")
    mv.exec("CREATE MATERIALIZED VIEW mv_p AS SELECT id, cat FROM items WHERE id > 0")
    dir = H.tmpfile("_plan_defs")
    os.execute("mkdir -p " .. dir)
    H.write(dir .. "/p.lua", DEF)
  end)

  it("says what apply would insert before the first apply", function()
    local r = H.mv("plan --definitions " .. dir)
    assert.are.equal(1, r.code)
    assert.are.equal(([[
catalog not installed (matviews init): every definition is new
mv_p (%s/p.lua:1):
  apply would insert the definition
  index missing: apply would create mv_p_id_key (id)
  index missing: apply would create mv_p_cat_idx (cat)
  grant missing: apply would GRANT SELECT TO mv_spec_reader
drift
]]):format(dir), r.out)
    assert.are.same({ { t = mv.null } }, mv.query("SELECT to_regclass('mat_view_definitions') AS t"))
  end)

  it("is in sync after apply, the SQL compared as the server normalises it", function()
    assert.are.equal(0, H.mv("apply --definitions " .. dir).code)
    local r = H.mv("plan --definitions " .. dir)
    assert.are.equal("", r.err)
    assert.are.equal("mv_p: in sync\nin sync\n", r.out)
    assert.are.equal(0, r.code)
  end)

  it("reports a live view whose SQL, indexes and grants were altered by hand", function()
    mv.exec("DROP MATERIALIZED VIEW mv_p")
    mv.exec("CREATE MATERIALIZED VIEW mv_p AS SELECT id, cat FROM items WHERE id > 5")
    mv.exec("CREATE UNIQUE INDEX by_hand_id ON mv_p (id)")
    mv.exec("CREATE INDEX by_hand_cat_id ON mv_p (cat, id)")
    mv.exec("GRANT SELECT, UPDATE ON mv_p TO mv_spec_app")
    local catalog = mv.query("SELECT name, sql, updated_at::text FROM mat_view_definitions")
    local r = H.mv("plan --definitions " .. dir)
    assert.are.equal(1, r.code)
    assert.are.equal(([[
mv_p (%s/p.lua:1):
  SQL changed: refresh would replace the view with a swap
  index missing: apply would create mv_p_cat_idx (cat)
  index not declared: by_hand_cat_id (apply leaves it)
  grant missing: apply would GRANT SELECT TO mv_spec_reader
  grant not declared: apply would REVOKE SELECT FROM mv_spec_app
  grant not declared: apply would REVOKE UPDATE FROM mv_spec_app
drift
]]):format(dir), r.out)
    r = H.mv("plan --json --definitions " .. dir)
    assert.are.equal(1, r.code)
    local v = cjson.decode(r.out).views[1]
    assert.are.same({ exists = true, relation = "public.mv_p", sql_changed = true,
      indexes_missing = { { name = "mv_p_cat_idx", columns = { "cat" }, unique = false } },
      indexes_extra = { { name = "by_hand_cat_id", definition = "CREATE INDEX by_hand_cat_id ON public.mv_p USING btree (cat, id)" } },
      grants_missing = { { role = "mv_spec_reader", privilege = "SELECT" } },
      grants_extra = { { role = "mv_spec_app", privilege = "SELECT" }, { role = "mv_spec_app", privilege = "UPDATE" } },
    }, v.live)
    assert.are.equal("same", v.catalog)
    -- nothing changed: no catalog write, no temporary view, no new index or grant
    assert.are.same(catalog, mv.query("SELECT name, sql, updated_at::text FROM mat_view_definitions"))
    assert.are.same({ { n = 2 } }, mv.query("SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'mv_p'"))
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname = 'matviews_plan_candidate'"))
  end)

  it("reports file changes, files gone and views missing", function()
    H.write(dir .. "/p.lua", (DEF:gsub('strategy = "concurrent"', 'strategy = "swap", schedule = "@daily"')))
    H.write(dir .. "/q.lua", 'view "mv_q" { sql = "SELECT 1 AS one" }\n')
    mv.exec([[INSERT INTO mat_view_definitions (name, sql) VALUES ('mv_gone', 'SELECT 1')]])
    local r = H.mv("plan --json --definitions " .. dir)
    assert.are.equal(1, r.code)
    local doc = cjson.decode(r.out)
    assert.is_false(doc.in_sync)
    local got = {}
    for _, v in ipairs(doc.views) do got[v.name] = { catalog = v.catalog, changed = v.changed, actions = v.actions } end
    assert.are.same({ catalog = "changed", changed = { "strategy", "schedule" } },
      { catalog = got.mv_p.catalog, changed = got.mv_p.changed })
    assert.are.same({ catalog = "missing", changed = {}, actions = {
      "apply would insert the definition", "view missing: create would create it" } }, got.mv_q)
    assert.are.same({ catalog = "orphan", changed = {}, actions = {
      "its file is gone: apply --prune would delete the definition", "view missing: create would create it" } }, got.mv_gone)
  end)
end)
