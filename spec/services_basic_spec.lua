-- mv.services: create_view, regular_refresh and delete_view on a real
-- database; the response shape, every status and error, search_path
-- resolution and names refused before any SQL runs.
local H = require "spec.helper"
local mv = require "matviews"

local function relkind(schema, name)
  local r = mv.query([[select c.relkind, c.relispopulated from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = $1 and c.relname = $2]], schema, name)[1]
  return r and r.relkind, r and r.relispopulated
end

local DEFN = { name = "mv_items", sql = "select id, v from items", unique_index_columns = { "id" } }

describe("mv.services basics", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("create table items (id int, v text)")
    mv.exec("insert into items select g, 'v' || g from generate_series(1, 5) g")
  end)

  it("create_view creates the view, its unique index, indexes and comment", function()
    local r = mv.services.create_view({ name = "mv_items", sql = "select id, v from items;  -- all",
      unique_index_columns = { "id" }, indexes = { { "v" } }, comment = "items, it's" }, { row_count_strategy = "exact" })
    assert.are.equal("integer", math.type(r.response.analyze_ms))
    r.response.analyze_ms = nil
    assert.are.same({
      status = "created", success = true, view = "public.mv_items",
      request = { name = "mv_items", row_count_strategy = "exact", force = false, no_data = false, analyze = true },
      response = { row_count_before = -1, row_count_after = 5, sql = {
        'CREATE MATERIALIZED VIEW "public"."mv_items" AS\nselect id, v from items\nWITH DATA',
        'CREATE UNIQUE INDEX "mv_items_unique" ON "public"."mv_items" ("id")',
        'CREATE INDEX "mv_items_idx1" ON "public"."mv_items" ("v")',
        [[COMMENT ON MATERIALIZED VIEW "public"."mv_items" IS 'items, it''s']],
        'ANALYZE "public"."mv_items"',
      } },
    }, r)
    assert.are.equal("m", relkind("public", "mv_items"))
    assert.are.same({ { indexname = "mv_items_idx1" }, { indexname = "mv_items_unique" } },
      mv.query("select indexname from pg_indexes where tablename = 'mv_items' order by 1"))
    assert.are.equal("items, it's", mv.query("select obj_description('mv_items'::regclass, 'pg_class') d")[1].d)
  end)

  it("create_view of an existing view without force answers an error that says to use --force", function()
    local r = mv.services.create_view(DEFN)
    assert.are.equal("error", r.status)
    assert.is_false(r.success)
    assert.are.equal("materialized view public.mv_items already exists: `matviews create --force public.mv_items` "
      .. "(force = true from Lua) drops and recreates it", r.error.message)
    assert.are.equal("42P07", r.error.sqlstate)
    assert.are.same({}, r.response.sql)
  end)

  it("create_view with force drops and recreates; no_data creates it unpopulated", function()
    mv.exec("insert into items values (6, 'v6')")
    local r = mv.services.create_view(DEFN, { force = true, no_data = true, row_count_strategy = "exact" })
    assert.are.equal("created", r.status)
    assert.are.equal(5, r.response.row_count_before)
    assert.are.equal(-1, r.response.row_count_after)
    assert.are.equal('DROP MATERIALIZED VIEW "public"."mv_items"', r.response.sql[1])
    assert.matches("WITH NO DATA$", r.response.sql[2])
    local _, populated = relkind("public", "mv_items")
    assert.is_false(populated)
  end)

  it("regular_refresh refreshes and counts rows per strategy", function()
    local r = mv.services.regular_refresh(DEFN, { row_count_strategy = "exact" })
    assert.are.equal("updated", r.status)
    assert.are.equal(-1, r.response.row_count_before)
    assert.are.equal(6, r.response.row_count_after)
    assert.are.equal("regular", r.response.refresh)
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."mv_items"', 'ANALYZE "public"."mv_items"' }, r.response.sql)
    r = mv.services.regular_refresh(DEFN, { row_count_strategy = "none", analyze = false })
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."mv_items"' }, r.response.sql)
    assert.is_false(r.request.analyze)
    assert.are.equal(-1, r.response.row_count_before)
    assert.are.equal(-1, r.response.row_count_after)
    mv.exec("analyze mv_items")
    r = mv.services.regular_refresh(DEFN, { row_count_strategy = "estimated" })
    assert.are.equal(6, r.response.row_count_before)
    assert.are.equal("estimated", r.request.row_count_strategy)
  end)

  it("regular_refresh of a missing view answers an error", function()
    local r = mv.services.regular_refresh({ name = "mv_missing" })
    assert.are.equal("error", r.status)
    assert.are.equal("materialized view public.mv_missing does not exist: `matviews create public.mv_missing` creates it", r.error.message)
    assert.are.equal("42P01", r.error.sqlstate)
    assert.are.same({}, r.response.sql)
  end)

  it("reports database errors in the response, never raising", function()
    local r = mv.services.create_view({ name = "mv_bad", sql = "select nope from items" })
    assert.are.equal("error", r.status)
    assert.are.equal('column "nope" does not exist', r.error.message)
    assert.are.equal("42703", r.error.sqlstate)
    assert.is_nil(relkind("public", "mv_bad"))
    assert.are.equal("column \"nope\" does not exist (SQLSTATE 42703)", tostring(r.error))
    mv.exec("create table plain_t (x int)")
    r = mv.services.regular_refresh({ name = "plain_t" })
    assert.are.equal("public.plain_t exists and is not a materialized view", r.error.message)
    r = mv.services.create_view({ name = "plain_t", sql = "select 1" }, { force = true })
    assert.are.equal("public.plain_t exists and is not a materialized view", r.error.message)
    assert.are.equal("r", relkind("public", "plain_t"))
  end)

  it("inside the caller's transaction, a failure leaves that transaction usable", function()
    local c <close> = mv.connect("dbname=" .. H.dbname)
    c:exec("begin")
    local r = mv.services.create_view({ name = "mv_tx", sql = "select 1/0 as x" }, { conn = c })
    assert.are.equal("22012", r.error.sqlstate)
    r = mv.services.create_view({ name = "mv_tx", sql = "select 1 as x" }, { conn = c })
    assert.are.equal("created", r.status)
    c:exec("rollback")
    assert.is_nil(relkind("public", "mv_tx"))
  end)

  it("looks a definition up by name or id, and raises for a missing one", function()
    local d = mv.definitions.save({ name = "mv_cat", sql = "select count(*) as n from items" })
    assert.are.equal("created", mv.services.create_view("mv_cat").status)
    assert.are.equal("updated", mv.services.regular_refresh(d.id).status)
    local ok, e = pcall(mv.services.regular_refresh, "mv_nowhere")
    assert.is_false(ok)
    assert.are.equal('no definition named "mv_nowhere"', e.message)
    ok, e = pcall(mv.services.regular_refresh, 424242)
    assert.are.equal("no definition with id 424242", e.message)
    ok, e = pcall(mv.services.create_view)
    assert.are.equal("a definition (name, id or table) is required", e.message)
    ok, e = pcall(mv.core.services.create_view, { sql = "select 1" }, { conn = mv.conn() })
    assert.are.equal("services: the definition has no name", e.message)
    ok, e = pcall(mv.core.services.create_view, { name = "x" }, {})
    assert.are.equal("services: opts.conn is required", e.message)
    ok, e = pcall(mv.services.create_view, DEFN, { conn = "dbname=x" })
    assert.are.equal("services: opts.conn must be a connection (mv.connect)", e.message)
    ok, e = pcall(mv.services.create_view, DEFN, { row_count_strategy = "guess" })
    assert.is_false(ok)
    assert.are.equal('services: row_count_strategy must be "none", "estimated" or "exact" (got guess)', e.message)
  end)

  it("refuses bad names and SQL before any SQL runs", function()
    local c <close> = mv.connect("dbname=" .. H.dbname)
    c:exec("begin")
    pcall(c.exec, c, "select 1/0") -- any statement on c now fails with 25P02
    local names = { "x; drop table t", "a.b.c", string.rep("n", 64), "vüe", 'q"q', "sp ace" }
    for _, svc in ipairs({ "create_view", "regular_refresh", "concurrent_refresh", "swap_refresh", "delete_view" }) do
      for _, name in ipairs(names) do
        local r = mv.services[svc](name, { conn = c })
        assert.are.equal("error", r.status)
        assert.are.equal("42602", r.error.sqlstate, svc .. " " .. name)
        assert.matches('^invalid name "', r.error.message)
        assert.is_nil(r.view)
      end
    end
    local r = mv.services.create_view({ name = "ok_name", sql = "select 1; drop table items" }, { conn = c })
    assert.are.equal("invalid sql: must be a single statement (found more after a semicolon)", r.error.message)
    r = mv.services.create_view({ name = "ok_name", unique_index_columns = { "a;b" }, sql = "select 1" }, { conn = c })
    assert.matches('^invalid unique_index_columns entry "a;b"', r.error.message)
    assert.are.equal(1, mv.query("select count(*) n from pg_class where relname = 'items'")[1].n)
  end)

  it("keeps a mixed-case name, quoted", function()
    local d = { name = "MixedCase", sql = "select id from items" }
    local r = mv.services.create_view(d)
    assert.are.equal("public.MixedCase", r.view)
    assert.matches('"public"."MixedCase"', r.response.sql[1])
    assert.are.equal("m", relkind("public", "MixedCase"))
    assert.is_nil(relkind("public", "mixedcase"))
    assert.are.equal("updated", mv.services.regular_refresh(d).status)
    assert.are.equal("deleted", mv.services.delete_view(d).status)
  end)

  describe("the schema from search_path", function()
    local function on_path(path, fn)
      local c <close> = mv.connect("dbname=" .. H.dbname)
      c:exec("set search_path = " .. path)
      return fn(c)
    end

    it("expands $user", function()
      local user = mv.query("select current_user u")[1].u
      mv.exec("create schema " .. mv.conn():quote_ident(user))
      local r = on_path('"$user", public', function(c) return mv.services.create_view({ name = "mv_u", sql = "select 1 as x" }, { conn = c }) end)
      assert.are.equal(user .. ".mv_u", r.view)
      assert.are.equal("m", relkind(user, "mv_u"))
      mv.exec("drop schema " .. mv.conn():quote_ident(user) .. " cascade")
    end)

    it("unquotes quoted tokens", function()
      mv.exec('create schema "Odd Schema"')
      local r = on_path('"Odd Schema", public', function(c) return mv.services.create_view({ name = "mv_q", sql = "select 1 as x" }, { conn = c }) end)
      assert.are.equal("Odd Schema.mv_q", r.view)
      assert.are.equal('CREATE MATERIALIZED VIEW "Odd Schema"."mv_q" AS\nselect 1 as x\nWITH DATA', r.response.sql[1])
      assert.are.equal("m", relkind("Odd Schema", "mv_q"))
    end)

    it("skips schemas that do not exist and falls back to public", function()
      local r = on_path("no_such_schema, public", function(c) return mv.services.create_view({ name = "mv_m", sql = "select 1 as x" }, { conn = c }) end)
      assert.are.equal("public.mv_m", r.view)
      r = on_path("no_such_schema", function(c) return mv.services.delete_view({ name = "mv_m" }, { conn = c }) end)
      assert.are.equal("deleted", r.status)
      assert.are.equal("public.mv_m", r.view)
    end)
  end)

  describe("delete_view", function()
    it("drops the view", function()
      mv.services.create_view({ name = "mv_del", sql = "select 1 as x" })
      local r = mv.services.delete_view({ name = "mv_del" }, { row_count_strategy = "exact" })
      assert.are.same({ status = "deleted", success = true, view = "public.mv_del",
        request = { name = "mv_del", row_count_strategy = "exact", cascade = false, if_exists = false },
        response = { sql = { 'DROP MATERIALIZED VIEW "public"."mv_del" RESTRICT' }, row_count_before = 1, row_count_after = -1 } }, r)
      assert.is_nil(relkind("public", "mv_del"))
    end)

    it("answers skipped with if_exists and an error without", function()
      local r = mv.services.delete_view({ name = "mv_del" }, { if_exists = true })
      assert.are.equal("skipped", r.status)
      assert.is_true(r.success)
      assert.are.equal("materialized view public.mv_del does not exist; skipped", r.response.note)
      r = mv.services.delete_view({ name = "mv_del" })
      assert.are.equal("error", r.status)
      assert.are.equal("materialized view public.mv_del does not exist (`matviews delete --if-exists` skips a view that is missing)", r.error.message)
    end)

    it("with dependents and no cascade names them and suggests cascade; cascade drops them", function()
      mv.services.create_view({ name = "mv_base", sql = "select id from items" })
      mv.exec("create view v_dep as select * from mv_base")
      mv.exec("create materialized view mv_dep2 as select * from mv_base")
      local r = mv.services.delete_view({ name = "mv_base" })
      assert.are.equal("error", r.status)
      assert.are.equal("2BP01", r.error.sqlstate)
      assert.are.equal("cannot delete materialized view public.mv_base: other objects depend on it "
        .. "(materialized view public.mv_dep2, view public.v_dep); `matviews delete --cascade public.mv_base` "
        .. "(cascade = true from Lua) drops them too", r.error.message)
      assert.matches("view v_dep depends on materialized view mv_base", r.error.detail)
      assert.are.equal("m", relkind("public", "mv_base"))
      r = mv.services.delete_view({ name = "mv_base" }, { cascade = true })
      assert.are.equal("deleted", r.status)
      assert.are.same({ 'DROP MATERIALIZED VIEW "public"."mv_base" CASCADE' }, r.response.sql)
      assert.is_nil(relkind("public", "v_dep"))
      assert.is_nil(relkind("public", "mv_dep2"))
    end)
  end)
end)

describe("create_view with declared grants", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("create table g_items (id int primary key)")
    for _, r in ipairs({ "mv_g_reader", "mv_g_writer" }) do
      if #mv.query("select 1 from pg_roles where rolname = $1", r) == 0 then mv.exec("create role " .. r) end
    end
  end)

  local function priv(role, rel, p)
    return mv.query("select has_table_privilege($1, $2, $3) as ok", role, rel, p)[1].ok
  end

  it("grants them on the new view, role quoted, privileges from the known words", function()
    local r = mv.services.create_view({ name = "mv_g", sql = "select id from g_items",
      grants = { "mv_g_reader", { role = "mv_g_writer", privileges = { "select", "REFERENCES" } } } })
    assert.are.equal("created", r.status)
    assert.are.same({ 'GRANT SELECT ON "public"."mv_g" TO "mv_g_reader"',
      'GRANT SELECT, REFERENCES ON "public"."mv_g" TO "mv_g_writer"' }, { r.response.sql[2], r.response.sql[3] })
    assert.is_true(priv("mv_g_reader", "mv_g", "SELECT"))
    assert.is_false(priv("mv_g_reader", "mv_g", "REFERENCES"))
    assert.is_true(priv("mv_g_writer", "mv_g", "REFERENCES"))
  end)

  it("through a saved definition and the create job", function()
    mv.definitions.save({ name = "mv_g2", sql = "select id from g_items", grants = { "mv_g_reader" } })
    assert.are.equal("success", mv.create("mv_g2").status)
    assert.is_true(priv("mv_g_reader", "mv_g2", "SELECT"))
  end)

  it("refuses a word that is no privilege, and a grant without a role, before any SQL", function()
    local ok, e = pcall(mv.services.create_view, { name = "mv_g3", sql = "select 1 as a",
      grants = { { role = "mv_g_reader", privileges = { "SELECT; DROP TABLE g_items" } } } })
    assert.is_false(ok)
    assert.are.equal("grants: 'SELECT; DROP TABLE g_items' is no privilege", e.message)
    ok, e = pcall(mv.services.create_view, { name = "mv_g3", sql = "select 1 as a", grants = { { privileges = { "SELECT" } } } })
    assert.are.equal("grants: each grant names a role (a string)", e.message)
    assert.is_nil(relkind("public", "mv_g3"))
  end)

  it("fails as a whole when a role does not exist: no view is left", function()
    local r = mv.services.create_view({ name = "mv_g4", sql = "select 1 as a", grants = { "no_such_role_g" } })
    assert.are.equal("error", r.status)
    assert.are.equal('role "no_such_role_g" does not exist', r.error.message)
    assert.is_nil(relkind("public", "mv_g4"))
  end)
end)

describe("create_view with declared indexes", function()
  setup(function()
    H.fresh_db()
    mv.exec("create table ix_items (a int, b int)")
  end)

  it("uses each declared name and unique flag, else <view>_idx<n>", function()
    local r = mv.services.create_view({ name = "mv_ix", sql = "select a, b from ix_items",
      indexes = { { "a" }, { name = "mv_ix_b_key", columns = { "b" }, unique = true } } })
    assert.are.equal("created", r.status)
    local got = mv.query([[select i.relname as name, x.indisunique as u from pg_index x
      join pg_class i on i.oid = x.indexrelid where x.indrelid = 'mv_ix'::regclass order by 1]])
    assert.are.same({ { name = "mv_ix_b_key", u = true }, { name = "mv_ix_idx1", u = false } }, got)
  end)

  it("creates what a definition file declares, so plan finds the view in sync", function()
    local dir = H.tmpfile("_ixdefs")
    os.execute("mkdir -p " .. H.q(dir))
    H.write(dir .. "/v.lua", 'view "mv_ix2" { sql = "select a, b from ix_items", unique = { "a" }, indexes = { { "b" } } }\n')
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. H.q(dir)).code)
    assert.are.equal("success", mv.create("mv_ix2").status)
    local names = mv.query([[select i.relname as name from pg_index x join pg_class i on i.oid = x.indexrelid
      where x.indrelid = 'mv_ix2'::regclass order by 1]])
    assert.are.same({ { name = "mv_ix2_b_idx" }, { name = "mv_ix2_unique" } }, names)
    local r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out)
  end)
end)
