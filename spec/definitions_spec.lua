-- mv.definitions: CRUD over mat_view_definitions, with validation that
-- names the refused field before any SQL runs.
local H = require "spec.helper"
local mv = require "matviews"

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_true(mv.is_error(e))
  return e
end

describe("mv.definitions", function()
  setup(function() H.fresh_db(); mv.init() end)

  it("saves a definition and reads it back by name and by id", function()
    local d = mv.definitions.save({ name = "mv_a", sql = "select 1 as id", refresh_strategy = "concurrent",
      unique_index_columns = { "id" }, schedule_cron = "*/5 * * * *", comment = "first",
      retention = { keep_last = 10 }, indexes = { { "id" } }, options = { x = 1 } })
    assert.is_true(math.type(d.id) == "integer")
    assert.are.equal("concurrent", d.refresh_strategy)
    assert.are.same({ "id" }, d.unique_index_columns)
    assert.are.same({}, d.dependencies)
    assert.are.same({ { "id" } }, d.indexes)
    assert.are.same({ keep_last = 10 }, d.retention)
    assert.are.same({ x = 1 }, d.options)
    assert.are.equal("first", d.comment)
    assert.are.same(d, mv.definitions.get("mv_a"))
    assert.are.same(d, mv.definitions.get(d.id))
    local row = mv.query("select refresh_strategy, unique_index_columns::text u, dependencies::text dep from mat_view_definitions where name = 'mv_a'")[1]
    assert.are.same({ refresh_strategy = 1, u = '["id"]', dep = "[]" }, row)
  end)

  it("updates by name, keeping the id and created_at, moving updated_at", function()
    local before = mv.definitions.get("mv_a")
    mv.exec("select pg_sleep(0.01)")
    local after = mv.definitions.save({ name = "mv_a", sql = "select 2 as id" })
    assert.are.equal(before.id, after.id)
    assert.are.equal(before.created_at, after.created_at)
    assert.are_not.equal(before.updated_at, after.updated_at)
    assert.are.equal("select 2 as id", after.sql)
    assert.are.equal("regular", after.refresh_strategy)
    assert.is_nil(after.comment)
    assert.is_nil(after.retention)
  end)

  it("keeps a mixed-case name as is", function()
    local d = mv.definitions.save({ name = "MixedCase_View", sql = "select 1 as x" })
    assert.are.equal("MixedCase_View", mv.definitions.get("MixedCase_View").name)
    assert.is_nil(mv.definitions.get("mixedcase_view"))
    assert.are.equal(d.id, mv.definitions.get(d.id).id)
  end)

  it("lists by name and deletes", function()
    mv.definitions.save({ name = "mv_b", sql = "values (1)" })
    local names = {}
    for _, d in ipairs(mv.definitions.list()) do names[#names + 1] = d.name end
    assert.are.same({ "MixedCase_View", "mv_a", "mv_b" }, names)
    assert.is_true(mv.definitions.delete("mv_b"))
    assert.is_false(mv.definitions.delete("mv_b"))
    assert.is_nil(mv.definitions.get("mv_b"))
    assert.is_nil(mv.definitions.get(987654))
    assert.is_false(mv.definitions.delete("a.b"))
  end)

  it("refuses bad names, naming the field, before any SQL runs", function()
    local cases = {
      ["x; drop table t"] = 'invalid name "x; drop table t": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      ["a.b"] = 'invalid name "a.b": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      [string.rep("a", 64)] = 'invalid name "' .. string.rep("a", 64) .. '": is 64 bytes long (at most 63)',
      ["vüe"] = 'invalid name "vüe": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      ['a"b'] = 'invalid name "a"b": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      ["a b"] = 'invalid name "a b": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      ["1abc"] = 'invalid name "1abc": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      [""] = 'invalid name "": is empty',
    }
    -- a connection in an aborted transaction fails any SQL: only validation may answer
    local c <close> = mv.connect("dbname=" .. H.dbname)
    c:exec("begin")
    pcall(c.exec, c, "select 1/0")
    for name, msg in pairs(cases) do
      local e = err_of(mv.definitions.save, { name = name, sql = "select 1" }, c)
      assert.are.equal(msg, e.message)
      assert.are.equal("name", e.field)
    end
    assert.is_true(mv.core.validate_name(string.rep("a", 63)))
    assert.are.same({ nil, "invalid name: must be a string" }, { mv.core.validate_name(42) })
    assert.are.same(0, mv.query("select count(*) n from mat_view_definitions where name like '%drop%'")[1].n)
  end)

  it("refuses SQL that is not one query", function()
    local cases = {
      ["select 1; drop table t"] = "invalid sql: must be a single statement (found more after a semicolon)",
      ["delete from t"] = "invalid sql: must be a query starting with SELECT, WITH, VALUES or TABLE",
      ["   "] = "invalid sql: is empty",
      ["select 'unterminated"] = "invalid sql: has an unterminated quoted string or identifier",
      ["select 1 /* open"] = "invalid sql: has an unterminated comment",
      ["selectx 1"] = "invalid sql: must be a query starting with SELECT, WITH, VALUES or TABLE",
    }
    for sql, msg in pairs(cases) do
      local e = err_of(mv.definitions.save, { name = "v", sql = sql })
      assert.are.equal(msg, e.message)
      assert.are.equal("sql", e.field)
    end
    local e = err_of(mv.definitions.save, { name = "v" })
    assert.are.equal("invalid sql: must be a string", e.message)
  end)

  it("accepts one query with quotes, comments and a trailing semicolon", function()
    for _, sql in ipairs({
      "select ';' as a; ", "WITH x AS (select 1) TABLE x;  -- done", "(select 1) union (select 2)",
      "select $$;$$ as a, $q$ ' ; $q$ as b", "select E'\\';' as a", "select \"a;b\" from (select 1 as \"a;b\") s",
      "values (1) /* ; /* nested */ ; */", "-- lead\nselect 1",
    }) do
      assert.is_true(mv.core.validate_sql(sql), sql)
    end
  end)

  it("validates strategy, key columns and the other fields by name", function()
    local function msg(tbl) tbl.name = tbl.name or "v"; tbl.sql = tbl.sql or "select 1 as id"; return err_of(mv.definitions.save, tbl) end
    local e = msg({ refresh_strategy = "fast" })
    assert.are.equal('invalid refresh_strategy: must be "regular", "concurrent" or "swap" (got fast)', e.message)
    assert.are.equal("refresh_strategy", e.field)
    e = msg({ refresh_strategy = "concurrent" })
    assert.are.equal("invalid unique_index_columns: a concurrent refresh needs at least one unique index column", e.message)
    e = msg({ unique_index_columns = { "ok", "bad col" } })
    assert.are.equal('invalid unique_index_columns: "bad col": is not a simple identifier (letters, digits and underscores, not starting with a digit)', e.message)
    e = msg({ dependencies = "mv_x" })
    assert.are.equal("invalid dependencies: must be an array", e.message)
    e = msg({ schedule_cron = 5 })
    assert.are.equal("invalid schedule_cron: must be a string", e.message)
    e = msg({ schedule_cron = "0 24 * * *" })
    assert.are.equal('invalid schedule_cron: "0 24 * * *": hour: 24 is out of range 0-23', e.message)
    assert.are.equal("schedule_cron", e.field)
    e = msg({ schedule_cron = "@fortnightly" })
    assert.are.equal('invalid schedule_cron: "@fortnightly": unknown macro (use @yearly, @monthly, @weekly, @daily or @hourly)', e.message)
    assert.are.equal("*/10 9-17 * * mon-fri", mv.definitions.save({ name = "v", sql = "select 1",
      schedule_cron = "*/10 9-17 * * mon-fri" }).schedule_cron)
    e = msg({ indexes = { {} } })
    assert.are.equal("invalid indexes: each index must name at least one column", e.message)
    e = msg({ retention = "forever" })
    assert.are.equal("invalid retention: must be a table", e.message)
    assert.are.equal("swap", mv.definitions.save({ name = "v", sql = "select 1", refresh_strategy = 2 }).refresh_strategy)
    assert.are.equal(2, mv.query("select refresh_strategy from mat_view_definitions where name = 'v'")[1].refresh_strategy)
  end)
end)
