-- `matviews plan`: changes nothing; one line per action apply would run
-- (save, create, replace, index add, grant, revoke; notes for what only
-- --prune changes), the SQL compared as the server normalises it; exit 0 in
-- sync, 1 on drift, 2 on invalid definitions.
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
    assert.are.equal([[
save mv_p (new)
index add mv_p_id_key on mv_p
index add mv_p_cat_idx on mv_p
grant SELECT on mv_p to mv_spec_reader
drift: 4 actions
]], r.out)
    assert.are.same({ { t = mv.null } }, mv.query("SELECT to_regclass('mat_view_definitions') AS t"))
  end)

  it("is in sync after apply, the SQL compared as the server normalises it", function()
    assert.are.equal(0, H.mv("apply --definitions " .. dir).code)
    local r = H.mv("plan --definitions " .. dir)
    assert.are.equal("", r.err)
    assert.are.equal("in sync\n", r.out)
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
    assert.are.equal([[
replace mv_p: SQL changed, same columns
index add mv_p_cat_idx on mv_p
grant SELECT on mv_p to mv_spec_reader
revoke SELECT on mv_p from mv_spec_app
revoke UPDATE on mv_p from mv_spec_app
note: index by_hand_cat_id on mv_p is not declared (apply --prune drops it)
note: a replace builds the new SQL beside the live view; readers wait only for the final swap transaction (bounded by lock_timeout_ms), never for the build
drift: 5 actions
]], r.out)
    r = H.mv("plan --json --definitions " .. dir)
    assert.are.equal(1, r.code)
    local doc = cjson.decode(r.out)
    local lines = {}
    for i, a in ipairs(doc.actions) do lines[i] = a.action .. " " .. a.view .. " " .. (a.sql or "") end
    assert.are.same({ "replace mv_p ",
      'index add mv_p CREATE INDEX "mv_p_cat_idx" ON "public"."mv_p" USING btree ("cat")',
      'grant mv_p GRANT SELECT ON "public"."mv_p" TO "mv_spec_reader"',
      'revoke mv_p REVOKE SELECT ON "public"."mv_p" FROM "mv_spec_app"',
      'revoke mv_p REVOKE UPDATE ON "public"."mv_p" FROM "mv_spec_app"' }, lines)
    r = H.mv("plan --prune --definitions " .. dir)
    assert.matches("index drop by_hand_cat_id on mv_p\n", r.out, 1, true)
    -- nothing changed: no catalog write, no temporary view, no new index or grant
    assert.are.same(catalog, mv.query("SELECT name, sql, updated_at::text FROM mat_view_definitions"))
    assert.are.same({ { n = 2 } }, mv.query("SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'mv_p'"))
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv_rehearsal%'"))
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
    for _, a in ipairs(doc.actions) do got[#got + 1] = a.line end
    assert.are.same({ "save mv_p (strategy, schedule)",
      "replace mv_p: SQL changed, same columns", "index add mv_p_cat_idx on mv_p",
      "grant SELECT on mv_p to mv_spec_reader", "revoke SELECT on mv_p from mv_spec_app",
      "revoke UPDATE on mv_p from mv_spec_app", "save mv_q (new)", "create mv_q" }, got)
    assert.are.same({ "index by_hand_cat_id on mv_p is not declared (apply --prune drops it)",
      "mv_gone has a definition but no file (apply --prune drops it)",
      "a replace builds the new SQL beside the live view; readers wait only for the final swap transaction (bounded by lock_timeout_ms), never for the build" },
      doc.notes)
  end)
end)
