-- mv.services.concurrent_refresh: the preflight (transaction block, unique
-- index, never-populated view), the refresh itself and the NULL-key warning.
local H = require "spec.helper"
local mv = require "matviews"

local D = { name = "mv_c", sql = "select id, v from src", unique_index_columns = { "id" } }

describe("mv.services.concurrent_refresh", function()
  setup(function()
    H.fresh_db()
    mv.exec("create table src (id int, v text)")
    mv.exec("insert into src select g, 'v' || g from generate_series(1, 4) g")
  end)

  it("refreshes concurrently with a usable unique index", function()
    assert.are.equal("created", mv.services.create_view(D).status)
    mv.exec("insert into src values (5, 'v5')")
    local r = mv.services.concurrent_refresh(D, { row_count_strategy = "exact" })
    assert.are.equal("integer", math.type(r.response.analyze_ms))
    r.response.analyze_ms = nil
    assert.are.same({ status = "updated", success = true, view = "public.mv_c",
      request = { name = "mv_c", row_count_strategy = "exact", analyze = true },
      response = { sql = { 'REFRESH MATERIALIZED VIEW CONCURRENTLY "public"."mv_c"', 'ANALYZE "public"."mv_c"' },
        row_count_before = 4, row_count_after = 5, refresh = "concurrent" } }, r)
    assert.are.equal(5, mv.query("select count(*) n from mv_c")[1].n)
  end)

  it("answers an error inside a transaction block", function()
    local c <close> = mv.connect("dbname=" .. H.dbname)
    c:exec("begin")
    local r = mv.services.concurrent_refresh(D, { conn = c })
    assert.are.equal("error", r.status)
    assert.are.equal("concurrent refresh of public.mv_c must run outside a transaction block, and the connection is in one", r.error.message)
    assert.are.equal("25001", r.error.sqlstate)
    assert.are.same({}, r.response.sql)
    c:exec("rollback")
  end)

  it("without a usable unique index answers an error carrying the CREATE UNIQUE INDEX to run", function()
    local d = { name = "mv_noidx", sql = "select id, v from src", unique_index_columns = { "id" } }
    mv.exec("create materialized view mv_noidx as select id, v from src")
    mv.exec("create index on mv_noidx (id)")                          -- not unique
    mv.exec("create unique index on mv_noidx (id) where id > 2")      -- partial
    mv.exec("create unique index on mv_noidx ((id + 1))")             -- expression
    local r = mv.services.concurrent_refresh(d)
    assert.are.equal("error", r.status)
    assert.are.equal("55000", r.error.sqlstate)
    assert.are.equal('materialized view public.mv_noidx has no usable unique index for a concurrent refresh '
      .. '(a valid unique index on plain columns, without WHERE); create one: '
      .. 'CREATE UNIQUE INDEX "mv_noidx_unique" ON "public"."mv_noidx" ("id")', r.error.message)
    assert.are.same({}, r.response.sql)
    -- the statement it names is the fix
    mv.exec('CREATE UNIQUE INDEX "mv_noidx_unique" ON "public"."mv_noidx" ("id")')
    assert.are.equal("updated", mv.services.concurrent_refresh(d).status)
    -- without declared key columns it says which field to fill
    mv.exec("create materialized view mv_nokey as select 1 as x")
    r = mv.services.concurrent_refresh({ name = "mv_nokey" })
    assert.matches('create one: CREATE UNIQUE INDEX "mv_nokey_unique" ON "public"."mv_nokey" %(<key columns>%)$', r.error.message)
    assert.are.equal("name the key columns in the definition's unique_index_columns", r.error.hint)
  end)

  it("runs a regular refresh for a never-populated view, and says so", function()
    local d = { name = "mv_empty", sql = "select id from src", unique_index_columns = { "id" } }
    assert.are.equal("created", mv.services.create_view(d, { no_data = true }).status)
    local r = mv.services.concurrent_refresh(d, { row_count_strategy = "exact" })
    assert.are.equal("updated", r.status)
    assert.are.equal("regular", r.response.refresh)
    assert.are.equal("public.mv_empty was never populated: ran a regular refresh (CONCURRENTLY needs a populated view)", r.response.note)
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."mv_empty"', 'ANALYZE "public"."mv_empty"' }, r.response.sql)
    assert.are.equal(-1, r.response.row_count_before)
    assert.are.equal(5, r.response.row_count_after)
    assert.are.equal("concurrent", mv.services.concurrent_refresh(d).response.refresh)
  end)

  it("warns when a key column holds NULLs", function()
    mv.exec("insert into src values (null, 'nokey')")
    local d = { name = "mv_nulls", sql = "select id, v from src", unique_index_columns = { "id", "v" } }
    assert.are.equal("created", mv.services.create_view(d).status)
    local r = mv.services.concurrent_refresh(d)
    assert.are.equal("updated", r.status)
    assert.are.same({ "key column(s) id, v of public.mv_nulls hold NULLs: rows with a NULL key never match, "
      .. "so every concurrent refresh deletes and reinserts them" }, r.response.warnings)
    local clean = { name = "mv_clean", sql = "select id from src where id is not null", unique_index_columns = { "id" } }
    mv.services.create_view(clean)
    assert.is_nil(mv.services.concurrent_refresh(clean).response.warnings)
  end)

  it("answers an error for a missing view", function()
    local r = mv.services.concurrent_refresh({ name = "mv_gone" })
    assert.are.equal("materialized view public.mv_gone does not exist: `matviews create public.mv_gone` creates it", r.error.message)
  end)
end)
