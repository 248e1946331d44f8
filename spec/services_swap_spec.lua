-- mv.services.swap_refresh: build aside, then one short transaction that
-- puts the new relation in place with every index, grant, owner and comment
-- of the old one, and rebuilds the views bound to it. Failures leave the old
-- view untouched and no temporary relation behind.
local H = require "spec.helper"
local mv = require "matviews"

local D = { name = "mv_sales", sql = "select id, grp, amount from src", refresh_strategy = "swap" }

local function ensure_role(name)
  mv.exec(("DO $$ BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$"):format(name))
end

local function oid_of(name) return mv.query("select $1::regclass::oid as o", name)[1].o end

local function temp_relations()
  return mv.query("select relname from pg_class where relname like 'mv\\_swap\\_%' order by 1")
end

-- Everything a swap must keep, for one relation.
local function state(rel)
  local s = {}
  s.owner = mv.query("select pg_get_userbyid(relowner) o from pg_class where oid = $1::regclass", rel)[1].o
  s.kind = mv.query("select relkind from pg_class where oid = $1::regclass", rel)[1].relkind
  s.indexes = mv.query([[select i.relname as name, pg_get_indexdef(i.oid) as def from pg_index x
    join pg_class i on i.oid = x.indexrelid where x.indrelid = $1::regclass order by 1]], rel)
  s.grants = mv.query([[select coalesce(nullif(pg_get_userbyid(a.grantee), '-'), 'PUBLIC') as grantee,
    a.privilege_type, a.is_grantable from pg_class c cross join lateral aclexplode(c.relacl) a
    where c.oid = $1::regclass order by 1, 2]], rel)
  s.comment = mv.query("select obj_description($1::regclass, 'pg_class') c", rel)[1].c
  s.column_comments = mv.query([[select a.attname, d.description from pg_description d join pg_attribute a
    on a.attrelid = d.objoid and a.attnum = d.objsubid where d.objoid = $1::regclass and d.objsubid > 0 order by 1]], rel)
  return s
end

describe("mv.services.swap_refresh", function()
  setup(function()
    H.fresh_db()
    ensure_role("swap_reader")
    ensure_role("swap_owner")
    mv.exec("create table src (id int, grp text, amount int)")
    mv.exec("insert into src select g, 'g' || (g % 3), g * 10 from generate_series(1, 30) g")
    assert.are.equal("created", mv.services.create_view(D).status)
    mv.exec("create unique index mv_sales_id_uniq on mv_sales (id)")
    mv.exec("create index mv_sales_grp_idx on mv_sales (grp)")
    mv.exec("create index mv_sales_big_idx on mv_sales (amount) where amount > 100")
    mv.exec("create index mv_sales_lower_idx on mv_sales (lower(grp))")
    mv.exec("grant select on mv_sales to swap_reader")
    mv.exec("comment on materialized view mv_sales is 'sales, per row'")
    mv.exec("comment on column mv_sales.amount is 'in cents'")
    mv.exec("create view v_sales_by_grp as select grp, sum(amount) as total, count(*) as n from mv_sales group by grp")
    mv.exec("grant select on v_sales_by_grp to swap_reader")
    mv.exec("comment on view v_sales_by_grp is 'totals by group'")
    mv.exec("create materialized view mv_sales_top as select grp, total, n from v_sales_by_grp")
    mv.exec("create unique index mv_sales_top_grp on mv_sales_top (grp)")
    mv.exec("grant select on mv_sales_top to swap_reader with grant option")
    mv.exec("comment on materialized view mv_sales_top is 'top groups'")
  end)

  it("swaps in new contents keeping indexes, grants, owner, comments and rebuilding dependents", function()
    local rels = { "mv_sales", "v_sales_by_grp", "mv_sales_top" }
    local before = {}
    for _, r in ipairs(rels) do before[r] = state(r) end
    assert.are.equal(4, #before.mv_sales.indexes)
    assert.are.same({ grantee = "swap_reader", privilege_type = "SELECT", is_grantable = false }, before.mv_sales.grants[#before.mv_sales.grants])
    assert.are.same({ grantee = "swap_reader", privilege_type = "SELECT", is_grantable = true }, before.mv_sales_top.grants[#before.mv_sales_top.grants])
    local old_oid = oid_of("mv_sales")
    mv.exec("insert into src select g, 'g9', 1000 from generate_series(31, 40) g")

    local r = mv.services.swap_refresh(D, { row_count_strategy = "exact" })
    assert.are.equal("updated", r.status, r.error and r.error.message)
    assert.is_true(r.success)
    assert.are.equal("public.mv_sales", r.view)
    assert.are.equal("swap", r.response.refresh)
    assert.are.equal(30, r.response.row_count_before)
    assert.are.equal(40, r.response.row_count_after)
    assert.is_true(math.type(r.response.lock_ms) == "integer" and r.response.lock_ms >= 0)
    assert.are.same({ "public.v_sales_by_grp", "public.mv_sales_top" }, r.response.rebuilt)
    assert.matches("^mv_swap_mv_sales_%d+$", r.response.temp_relation)
    assert.are.equal(5000, r.request.lock_timeout_ms)
    assert.are.equal("SET LOCAL lock_timeout = 5000", r.response.sql[6])

    for _, rel in ipairs(rels) do assert.are.same(before[rel], state(rel), rel) end
    assert.are_not.equal(old_oid, oid_of("mv_sales"))
    assert.are.same({}, temp_relations())
    -- dependents read the new data
    assert.are.equal(40, mv.query("select count(*) n from mv_sales")[1].n)
    assert.are.same({ { total = 10000, n = 10 } }, mv.query("select total, n from v_sales_by_grp where grp = 'g9'"))
    assert.are.same({ { total = 10000 } }, mv.query("select total from mv_sales_top where grp = 'g9'"))
    -- and stay bound to the new relation
    mv.exec("insert into src values (41, 'g9', 5)")
    assert.are.equal("updated", mv.services.swap_refresh(D).status)
    assert.are.same({ { n = 11 } }, mv.query("select n from mv_sales_top where grp = 'g9'"))
  end)

  it("keeps the owner of a view owned by another role", function()
    mv.exec("grant select on src to swap_owner")
    local d = { name = "mv_owned", sql = "select id from src" }
    mv.services.create_view(d)
    mv.exec("alter materialized view mv_owned owner to swap_owner")
    mv.exec("create view v_owned as select * from mv_owned")
    mv.exec("alter view v_owned owner to swap_reader")
    local r = mv.services.swap_refresh(d)
    assert.are.equal("updated", r.status, r.error and r.error.message)
    assert.are.equal("swap_owner", state("mv_owned").owner)
    assert.are.equal("swap_reader", state("v_owned").owner)
  end)

  it("whose SQL fails leaves the old view and no stray relation", function()
    local old_oid, before = oid_of("mv_sales"), state("mv_sales")
    local r = mv.services.swap_refresh({ name = "mv_sales", sql = "select id, grp, amount / 0 as amount from src" })
    assert.are.equal("error", r.status)
    assert.are.equal("division by zero", r.error.message)
    assert.are.equal("22012", r.error.sqlstate)
    assert.are.equal(oid_of("mv_sales"), old_oid)
    assert.are.same(before, state("mv_sales"))
    assert.are.same({}, temp_relations())
    -- an index of the old view that the new contents break fails the same way
    mv.exec("insert into src values (1, 'dup', 1)")
    r = mv.services.swap_refresh(D)
    assert.are.equal("23505", r.error.sqlstate)
    assert.are.equal(old_oid, oid_of("mv_sales"))
    assert.are.same({}, temp_relations())
    mv.exec("delete from src where grp = 'dup'")
  end)

  it("blocked by a long reader gives up at lock_timeout with the old view intact", function()
    local reader <close> = mv.connect("dbname=" .. H.dbname)
    reader:exec("begin")
    reader:query("select count(*) from mv_sales") -- holds ACCESS SHARE until the end of its transaction
    local old_oid = oid_of("mv_sales")
    local r = mv.services.swap_refresh(D, { lock_timeout_ms = 200 })
    assert.are.equal("error", r.status)
    assert.are.equal("55P03", r.error.sqlstate)
    assert.are.equal("swap of public.mv_sales gave up waiting for a lock after 200 ms (lock_timeout_ms); the old view is untouched", r.error.message)
    assert.are.equal("canceling statement due to lock timeout", r.error.detail)
    assert.is_true(r.response.lock_ms >= 0)
    reader:exec("commit")
    assert.are.equal(old_oid, oid_of("mv_sales"))
    assert.are.same({}, temp_relations())
    assert.are.equal(0, #mv.query("select 1 from pg_locks where relation = $1::oid and granted and mode = 'AccessExclusiveLock'", old_oid))
    assert.are.equal("updated", mv.services.swap_refresh(D).status)
  end)

  it("refuses before building when something depends on the view that it cannot rebuild", function()
    local d = { name = "mv_fn", sql = "select id from src" }
    mv.services.create_view(d)
    mv.exec("create function count_fn() returns bigint language sql begin atomic select count(*) from mv_fn; end")
    local r = mv.services.swap_refresh(d)
    assert.are.equal("error", r.status)
    assert.are.equal("swap of public.mv_fn refused before building: a swap cannot rebuild what depends on the view "
      .. "(or on a view reading it): function count_fn()", r.error.message)
    assert.are.equal("2BP01", r.error.sqlstate)
    assert.are.same({}, r.response.sql)
    assert.are.same({}, temp_relations())
  end)

  it("answers errors for a missing view and inside a transaction block", function()
    local r = mv.services.swap_refresh({ name = "mv_none", sql = "select 1" })
    assert.are.equal("materialized view public.mv_none does not exist: `matviews create public.mv_none` creates it", r.error.message)
    local c <close> = mv.connect("dbname=" .. H.dbname)
    c:exec("begin")
    r = mv.services.swap_refresh(D, { conn = c })
    assert.are.equal("swap refresh of public.mv_sales must run outside a transaction block, and the connection is in one", r.error.message)
    c:exec("rollback")
  end)

  it("names its temp relation within 63 bytes for long and mixed-case names", function()
    local name = "Long_" .. string.rep("x", 58)
    local d = { name = name, sql = "select 1 as a" }
    assert.are.equal("created", mv.services.create_view(d).status)
    mv.exec(('create index "%s_a" on "%s" (a)'):format(name:sub(1, 40), name))
    local r = mv.services.swap_refresh(d)
    assert.are.equal("updated", r.status, r.error and r.error.message)
    assert.are.equal(63, #r.response.temp_relation)
    assert.matches("^mv_swap_Long_x+_%d+$", r.response.temp_relation)
    assert.are.equal(1, #mv.query("select 1 from pg_indexes where indexname = $1", name:sub(1, 40) .. "_a"))
  end)
end)
