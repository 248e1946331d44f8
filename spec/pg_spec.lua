-- The libpq binding: parameters, conversions, errors, transactions,
-- connection objects, connection failures and cancel.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

describe("mv.query and mv.exec", function()
  setup(function() H.fresh_db() end)

  it("passes values as $n parameters", function()
    local r = mv.query("select $1::int + $2::int as s, $3::text as t, $4::text is null as n", 40, 2, "x'y", mv.null)
    assert.are.same({ s = 42, t = "x'y", n = true }, r[1])
    assert.is_true(mv.query("select $1::text is null as n", nil)[1].n)
  end)

  it("converts integers, including bigint beyond 2^53, to Lua integers", function()
    local r = mv.query("select 1::int2 a, 2::int4 b, 9007199254740993::int8 c, '-9223372036854775808'::int8 d, 5::oid e")[1]
    assert.are.equal(1, r.a); assert.is_true(math.type(r.a) == "integer")
    assert.are.equal(2, r.b)
    assert.are.equal(9007199254740993, r.c); assert.are.equal("integer", math.type(r.c))
    assert.are.equal(math.mininteger, r.d)
    assert.are.equal(5, r.e)
    assert.are.equal(9007199254740993, mv.query("select $1::int8 + 0 as v", 9007199254740993)[1].v)
  end)

  it("converts floats and numerics to numbers, numerics beyond a double to text", function()
    local r = mv.query([[select 1.5::float8 a, 0.25::float4 b, 2.50::numeric c, 12::numeric d,
      123456789012345678901234567890::numeric e, 0.1234567890123456789::numeric f,
      'NaN'::numeric g, 'Infinity'::float8 h, 3::float8 i]])[1]
    assert.are.equal(1.5, r.a)
    assert.are.equal(0.25, r.b)
    assert.are.equal(2.5, r.c)
    assert.are.equal(12, r.d); assert.are.equal("integer", math.type(r.d))
    assert.are.equal("123456789012345678901234567890", r.e)
    assert.are.equal("0.1234567890123456789", r.f)
    assert.are.equal("NaN", r.g)
    assert.are.equal(math.huge, r.h)
    assert.are.equal("float", math.type(r.i))
  end)

  it("converts booleans, NULL and text (unicode kept intact)", function()
    local r = mv.query("select true a, false b, null::int c, $1::text d, '{1,2}'::int[] e, '2026-01-02'::date f", "héllo ✓ 日本")[1]
    assert.is_true(r.a)
    assert.is_false(r.b)
    assert.are.equal(mv.null, r.c)
    assert.are.equal(cjson.null, r.c)
    assert.are.equal("héllo ✓ 日本", r.d)
    assert.are.equal("{1,2}", r.e)
    assert.are.equal("2026-01-02", r.f)
    assert.are.equal('{"c":null}', cjson.encode({ c = r.c }))
  end)

  it("passes booleans, floats and tables (as JSON) as parameters", function()
    local r = mv.query("select $1::bool a, $2::float8 b, ($3::jsonb)->>'k' c", true, 0.1, { k = "v" })[1]
    assert.is_true(r.a)
    assert.are.equal(0.1, r.b)
    assert.are.equal("v", r.c)
  end)

  it("refuses a parameter with a NUL byte or of a type it cannot pass", function()
    local ok, err = pcall(mv.query, "select $1::text", "a\0b")
    assert.is_false(ok)
    assert.matches("parameter %$1 contains a NUL byte", err)
    ok, err = pcall(mv.query, "select $1::text", print)
    assert.is_false(ok)
    assert.matches("parameter %$1: cannot pass a function", err)
  end)

  it("returns rows keyed by column name and exec the affected count", function()
    mv.exec("create table t (id int primary key, v text)")
    assert.are.equal(3, mv.exec("insert into t values (1,'a'),(2,'b'),(3,NULL)"))
    local rows = mv.query("select id, v from t order by id")
    assert.are.equal(3, #rows)
    assert.are.same({ id = 2, v = "b" }, rows[2])
    assert.are.equal(mv.null, rows[3].v)
    assert.are.equal(2, mv.exec("delete from t where id > $1", 1))
    assert.are.same({}, mv.query("select * from t where false"))
  end)
end)

describe("database errors", function()
  it("are raised as tables with message, sqlstate, detail, hint and position", function()
    local ok, e = pcall(mv.query, "select * from nope_table")
    assert.is_false(ok)
    assert.are.equal("table", type(e))
    assert.are.equal('relation "nope_table" does not exist', e.message)
    assert.are.equal("42P01", e.sqlstate)
    assert.are.equal(15, e.position)
    assert.are.equal('relation "nope_table" does not exist (SQLSTATE 42P01)', tostring(e))
    assert.is_true(mv.is_error(e))
    -- their text as callers show it: the message alone; other values as tostring gives them
    assert.are.equal('relation "nope_table" does not exist', mv.error_message(e))
    assert.are.equal("x.lua:1: boom", mv.error_message("x.lua:1: boom"))
    assert.are.equal("7", mv.error_message({ message = 7 }))
    assert.are.equal("nil", mv.error_message(nil))
    assert.matches("^table: ", mv.error_message({}))
    mv.exec("create table u (id int primary key)")
    mv.exec("insert into u values (1)")
    ok, e = pcall(mv.exec, "insert into u values (1)")
    assert.are.equal("23505", e.sqlstate)
    assert.are.equal("Key (id)=(1) already exists.", e.detail)
    ok, e = pcall(mv.query, "select lower(1)")
    assert.are.equal("42883", e.sqlstate)
    assert.matches("explicit type casts", e.hint)
  end)

  it("from libpq (lost connection) have a message and no sqlstate", function()
    local c = mv.connect("dbname=" .. H.dbname)
    local pid = c:info().pid
    mv.query("select pg_terminate_backend($1)", pid)
    local ok, e = pcall(c.query, c, "select 1")
    assert.is_false(ok)
    assert.is_nil(e.sqlstate)
    assert.is_string(e.message)
    assert.is_true(#e.message > 0)
    c:close()
  end)
end)

describe("mv.transaction", function()
  it("commits when the function returns, returning its results", function()
    mv.exec("create table tx (v int)")
    local a, b = mv.transaction(function(conn)
      conn:exec("insert into tx values (1)")
      return "done", 2
    end)
    assert.are.equal("done", a); assert.are.equal(2, b)
    assert.are.equal(1, mv.query("select count(*) n from tx")[1].n)
  end)

  it("rolls back and re-raises on error", function()
    local ok, e = pcall(mv.transaction, function(conn)
      conn:exec("insert into tx values (2)")
      conn:exec("insert into tx values ('x')")
    end)
    assert.is_false(ok)
    assert.are.equal("22P02", e.sqlstate)
    assert.are.equal(1, mv.query("select count(*) n from tx")[1].n)
    assert.is_false(mv.conn():info().in_transaction)
    ok, e = pcall(mv.transaction, function() mv.exec("insert into tx values (3)"); error("lua side") end)
    assert.is_false(ok)
    assert.matches("lua side", e)
    assert.are.equal(1, mv.query("select count(*) n from tx")[1].n)
  end)

  it("nests with savepoints", function()
    mv.transaction(function()
      mv.exec("insert into tx values (10)")
      pcall(mv.transaction, function() mv.exec("insert into tx values (11)"); error("inner") end)
    end)
    assert.are.same({ { v = 10 } }, mv.query("select v from tx where v >= 10"))
  end)
end)

describe("connection objects", function()
  it("close with <close> locals and twice harmlessly", function()
    local c
    do
      local conn <close> = mv.connect("dbname=" .. H.dbname)
      c = conn
      assert.are.equal(1, conn:query("select 1 as x")[1].x)
      assert.is_true(conn:is_open())
    end
    assert.is_false(c:is_open())
    c:close()
    local ok, e = pcall(c.query, c, "select 1")
    assert.is_false(ok)
    assert.are.equal("connection is closed", e.message)
  end)

  it("quote identifiers through libpq", function()
    assert.are.equal('"a""b"', mv.conn():quote_ident('a"b'))
  end)

  it("fail to open with one line naming host and port, never the password", function()
    local ok, e = pcall(mv.connect, "host=127.0.0.1 port=1 password=s3cr3tpw connect_timeout=2")
    assert.is_false(ok)
    assert.matches("^could not connect to host 127.0.0.1 port 1: ", e.message)
    assert.is_nil(e.message:find("\n"))
    assert.is_nil(e.message:find("s3cr3tpw"))
  end)
end)

describe("connection failures from the command line", function()
  it("exit 1 with one line naming host and port for a refused connection", function()
    local r = H.mv("--dsn 'postgresql://bob:s3cr3tpw@127.0.0.1:1/db' -e 'mv.query(\"select 1\")'")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: could not connect to host 127.0.0.1 port 1: Connection refused\n", r.err)
  end)

  it("exit 1 without echoing a conninfo that does not parse", function()
    local r = H.mv("--dsn 'host=x s3cr3tpw' -e 'mv.query(\"select 1\")'")
    assert.are.equal(1, r.code)
    assert.matches("^matviews: invalid connection string: [^\n]*\n$", r.err)
    assert.is_nil(r.err:find("s3cr3tpw"))
  end)

  it("takes DATABASE_URL when no --dsn is given", function()
    local r = H.mv("-e 'mv.query(\"select 1\")'", { env = { DATABASE_URL = "postgresql://127.0.0.1:1/x" } })
    assert.are.equal(1, r.code)
    assert.matches("port 1", r.err)
  end)
end)

describe("SIGINT during a query", function()
  local P = require "spec.proc_helper"
  setup(function() H.fresh_db() end)

  it("cancels it: the query fails with 57014 and the script goes on", function()
    local code = "local ok, e = pcall(mv.query, 'select pg_sleep(20) /* sigint1 */'); print(e.sqlstate); print(mv.query('select 5 as x')[1].x)"
    local p = P.spawn("-e " .. H.q(code))
    local pid = P.pid(p)
    P.wait_query("%sigint1%")
    P.kill(pid, "INT")
    local r = P.wait(p)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("57014\n5\n", r.out)
  end)

  -- The statement must not end between the two signals, whenever and
  -- however often the server acts on the cancel the first one sends (a
  -- PostgreSQL 15 postmaster signals a backend twice per cancel request, to
  -- its pid and to its process group, so a query that catches cancels can
  -- still get one where it does not): its backend is stopped (SIGSTOP) from
  -- the moment it sleeps until the host has exited, then continued.
  -- Only the exit on a second SIGINT prints "matviews: interrupted" alone.
  it("exits 130 on a second SIGINT during the same query", function()
    local p = P.spawn("-e " .. H.q("mv.exec('SELECT pg_sleep(30) /* sigint2 */')"))
    local pid = P.pid(p)
    local backend = P.wait_query("%sigint2%", nil, "PgSleep").pid
    assert.is_true(P.kill(backend, "STOP"))
    finally(function() P.kill(backend, "CONT") end)
    -- two signals sent at once may merge into one: send until it exits
    P.wait_for("the host to exit", function()
      P.kill(pid, "INT")
      mv.core.sys.sleep_ms(100)
      return H.slurp(p.code) ~= ""
    end)
    local r = P.wait(p)
    assert.are.equal(130, r.code, r.err)
    assert.are.equal("\nmatviews: interrupted\n", r.err)
  end)
end)

describe("conn:clone(true), a connection opened while the caller works", function()
  setup(function() H.fresh_db("clone_early") end)

  it("is a connection of the same database and user, its session set up, once used", function()
    local c <close> = mv.conn():clone(true)
    assert.is_true(c:is_open())
    assert.is_true(c:is_connected())
    local r = c:query([[SELECT current_database() AS db, current_user AS u,
      current_setting('idle_session_timeout') AS idle]])[1]
    assert.are.same({ db = H.dbname, u = mv.query("SELECT current_user AS u")[1].u, idle = "0" }, r)
    assert.are_not.equal(mv.conn():info().pid, c:info().pid)
  end)

  it("is closed when the server refuses it, and a clone made then says why", function()
    local role = "clone_early_limited"
    mv.exec("DROP ROLE IF EXISTS " .. role)
    mv.exec("CREATE ROLE " .. role .. " LOGIN CONNECTION LIMIT 1")
    finally(function() mv.exec("DROP ROLE IF EXISTS " .. role) end)
    local one <close> = mv.connect(("dbname=%s user=%s"):format(H.dbname, role))
    local early <close> = one:clone(true)
    assert.is_false(early:is_open())
    mv.core.slot_wait(0)
    finally(function() mv.core.slot_wait(mv.config().connect_wait_ms) end)
    local ok, err = pcall(one.clone, one)
    assert.is_false(ok)
    assert.matches("too many connections for role", tostring(err.message))
  end)
end)
