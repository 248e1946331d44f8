-- Signals on the single-view path: SIGTERM is handled as SIGINT (the query
-- is cancelled, the run recorded as failed, exit 143); the first Ctrl-C
-- stops a sequential `refresh --all` (the running view is cancelled and
-- recorded, the rest get no run, exit 130); wait_any refuses a pid that
-- would make waitpid reap any child.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

-- The pid of the backend running a query LIKE pattern, inside its pg_sleep.
local function running(pattern) return P.wait_query(pattern, nil, "PgSleep").pid end

describe("signals", function()
  setup(function()
    H.fresh_db()
    mv.init()
    -- the views sleep as long as sg_delay says: 0 to create them, 30 after
    mv.exec("CREATE TABLE sg_delay AS SELECT 0::float8 AS d")
    for _, n in ipairs({ "sg_a", "sg_b", "sg_c" }) do
      local sql = "SELECT 1 AS x, pg_sleep(d)::text AS s FROM sg_delay"
      mv.definitions.save({ name = n, sql = sql })
      mv.exec(("CREATE MATERIALIZED VIEW %s AS %s"):format(n, sql))
    end
    mv.exec("UPDATE sg_delay SET d = 30")
  end)

  it("SIGTERM cancels the refresh, records it as failed and exits 143", function()
    local p = P.spawn("refresh sg_a --yes")
    local pid = P.pid(p)
    running("REFRESH MATERIALIZED VIEW%sg_a%")
    P.kill(pid, "TERM")
    local r = P.wait(p)
    assert.are.equal(143, r.code, r.out .. r.err)
    local run = P.runs("refresh", "sg_a")[1]
    assert.are.equal(3, run.status)
    assert.are.equal("canceling statement due to user request", run.error)
    assert.are.equal("57014", run.meta.error.sqlstate)
  end)

  it("the first Ctrl-C stops refresh --all: the view running is recorded, the rest not started", function()
    local before = #P.runs("refresh", "sg_a")
    local p = P.spawn("refresh sg_a sg_b sg_c --yes")
    local pid = P.pid(p)
    running("REFRESH MATERIALIZED VIEW%sg_a%")
    P.kill(pid, "INT")
    local r = P.wait(p)
    assert.are.equal(130, r.code, r.out .. r.err)
    assert.matches("interrupted: 2 not started\n", r.err)
    assert.matches("refresh sg_a: failed in %d+ ms: canceling statement due to user request", r.out)
    assert.are.equal(before + 1, #P.runs("refresh", "sg_a"))
    assert.are.equal(3, P.runs("refresh", "sg_a")[before + 1].status, r.out .. r.err)
    assert.are.same({}, P.runs("refresh", "sg_b"))
    assert.are.same({}, P.runs("refresh", "sg_c"))
  end)

  it("wait_any refuses a pid that is not a positive integer", function()
    for _, pid in ipairs({ "12", 1.5, 0, -1 }) do
      local ok, err = pcall(mv.core.sys.wait_any, { pid })
      assert.is_false(ok)
      assert.matches("wait_any: pid 1 is not a positive integer", tostring(err))
    end
  end)
end)

describe("the sessions matviews holds", function()
  local db
  setup(function()
    db = H.fresh_db()
    mv.exec(("ALTER DATABASE %s SET idle_session_timeout = '1s'"):format(db))
    mv.exec(("ALTER DATABASE %s SET idle_in_transaction_session_timeout = '2s'"):format(db))
  end)

  it("never end for idleness, whatever the server's idle timeouts", function()
    local r = H.mv("-e " .. H.q([[
      local c = mv.conn()
      print(c:query("SELECT current_setting('idle_session_timeout') AS a,"
        .. " current_setting('idle_in_transaction_session_timeout') AS b")[1].a)
      print(c:query("SHOW idle_in_transaction_session_timeout")[1].idle_in_transaction_session_timeout)
      mv.core.sys.sleep_ms(1500) -- idle past the server's 1 s
      print(c:query("SELECT 7 AS x")[1].x)]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("0\n5min\n7\n", r.out)
  end)
end)

describe("a new session's settings", function()
  setup(function() H.fresh_db("session_settings") end)

  -- the settings a connection opened with these startup options ends up with
  local function settings(options)
    local c <close> = mv.connect(("dbname=%s options='%s'"):format(H.dbname, options))
    return c:query([[SELECT current_setting('client_connection_check_interval') AS check,
      current_setting('idle_session_timeout') AS idle,
      current_setting('idle_in_transaction_session_timeout') AS idle_tx]])[1]
  end

  it("check the client every second unless the user chose an interval", function()
    assert.are.equal("1s", settings("").check)
    assert.are.equal("5s", settings("-c client_connection_check_interval=5000").check)
  end)

  it("never end for idleness, and raise only an idle-in-transaction timeout under 5 minutes", function()
    assert.are.equal("0", settings("-c idle_session_timeout=10s").idle)
    for given, kept in pairs({ ["0"] = "0", ["1"] = "5min", ["299999"] = "5min", ["300000"] = "5min",
                               ["300001"] = "300001ms", ["1h"] = "1h" }) do
      assert.are.equal(kept, settings("-c idle_in_transaction_session_timeout=" .. given).idle_tx, given)
    end
  end)
end)
