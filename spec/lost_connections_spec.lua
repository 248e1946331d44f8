-- Lost connections, as issue 13 reproduced them: sessions that sit idle
-- longer than the server's idle_session_timeout (the recorder during a long
-- swap, a worker between polls), the parallel coordinator's session
-- terminated while it waits for its workers, and a worker across a server
-- restart (pg_ctl -m fast stop; start, on a cluster of this spec's own).
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local OTHERS = P.OTHERS

describe("sessions idle longer than the server's idle_session_timeout", function()
  setup(function()
    local db = H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE lc_src AS SELECT g AS id FROM generate_series(1, 5) g")
    mv.definitions.save({ name = "lc_swap", refresh_strategy = "swap", sql = "SELECT id FROM lc_src, pg_sleep(2.5)" })
    mv.exec("CREATE MATERIALIZED VIEW lc_swap AS SELECT id FROM lc_src WITH NO DATA")
    mv.definitions.save({ name = "lc_quick", sql = "SELECT id FROM lc_src" })
    mv.exec("CREATE MATERIALIZED VIEW lc_quick AS SELECT id FROM lc_src")
    mv.exec(("ALTER DATABASE %s SET idle_session_timeout = '1s'"):format(db))
  end)

  it("a swap refresh of 2.5 s succeeds and is recorded as a success", function()
    local r = H.mv("--yes refresh lc_swap")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    assert.matches("^%[1/1%] refresh lc_swap: success in %d+ ms, 5 rows\n$", r.out)
    local runs = P.runs("refresh", "lc_swap")
    assert.are.same({ 2, 5 }, { runs[#runs].status, runs[#runs].rows_count })
  end)

  it("a worker polling every 1.5 s keeps its session and runs a job queued later", function()
    local p = P.spawn("worker --poll-ms 1500")
    -- a failure below leaves no worker behind for the next test's count
    finally(function() if H.slurp(p.code) == "" then P.kill(P.pid(p), "KILL") end end)
    -- two polls, 1.5 s apart: idle past the server's 1 s in between
    local CLAIM = OTHERS .. " AND query LIKE 'UPDATE matviews_jobs j SET status = 1%'"
    local first = P.wait_for("the worker polling", function() return mv.query(CLAIM)[1] end).pid
    -- its session lives past 2 s, through a 1.5 s idle pause between polls
    P.wait_for("the worker's session to live 2 s", function()
      return mv.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_start < now() - interval '2 s'", first)[1]
    end)
    assert.are.equal(0, H.mv("enqueue refresh lc_quick").code)
    P.wait_for("the job to be done", function() return mv.query("SELECT 1 FROM matviews_jobs WHERE status = 2")[1] end)
    -- claimed by the first session, which polls on: right after the job is
    -- marked done its last statement is still that UPDATE, so wait for the
    -- next claim instead of reading pg_stat_activity at once
    assert.are.same({ { backend_pid = first } }, mv.query("SELECT backend_pid FROM matviews_jobs WHERE status = 2"))
    P.wait_for("the worker's first session to poll again", function()
      return mv.query(CLAIM:gsub("query LIKE", "pid = $1 AND query LIKE", 1), first)[1]
    end)
    assert.are.same({ { pid = first } }, mv.query(CLAIM:gsub("query LIKE", "pid = $1 AND query LIKE", 1), first))
    P.kill(P.pid(p), "TERM")
    local r = P.wait(p)
    assert.are.equal(143, r.code, r.err)
    assert.are.equal("", r.err)
  end)
end)

describe("the parallel coordinator's session terminated while it waits", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE lc_src AS SELECT g AS id FROM generate_series(1, 5) g")
    -- lc_up waits until lc_gate holds a row (the spec opens it once the
    -- coordinator's session is gone, however slow the machine), then divides
    -- by zero while lc_src holds id 0
    mv.exec("CREATE TABLE lc_gate (open boolean)")
    mv.exec([[CREATE FUNCTION lc_gate_wait() RETURNS int LANGUAGE plpgsql AS $$
      BEGIN WHILE NOT EXISTS (SELECT 1 FROM lc_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; RETURN 1; END $$]])
    mv.exec("INSERT INTO lc_gate VALUES (true)")
    mv.definitions.save({ name = "lc_up", sql = "SELECT id, 1 / id AS inv FROM lc_src, lc_gate_wait()" })
    mv.exec("CREATE MATERIALIZED VIEW lc_up AS SELECT id, 1 / id AS inv FROM lc_src, lc_gate_wait()")
    mv.exec("DELETE FROM lc_gate")
    mv.definitions.save({ name = "lc_down", sql = "SELECT id FROM lc_up" })
    mv.exec("CREATE MATERIALIZED VIEW lc_down AS SELECT id FROM lc_up")
    mv.exec("INSERT INTO lc_src VALUES (0)")
  end)

  it("reconnects, records the downstream view as not refreshed, and leaves no worker", function()
    local p = P.spawn("-e " .. H.q([[
      mv.conn():exec("SET application_name = 'lc_coordinator'")
      local r = mv.refresh_all({ parallel = 2, views = { "lc_up", "lc_down" } })
      print(r.total, r.succeeded, r.failed, r.skipped)
      for _, run in ipairs(r.runs) do print(run.name, run.status, run.run_id ~= nil, run.error) end]]))
    finally(function() mv.exec("INSERT INTO lc_gate VALUES (true)") end) -- a failure leaves nothing waiting
    P.wait_query("REFRESH MATERIALIZED VIEW%lc_up%")
    local coordinator = P.wait_for("the coordinator's session", function()
      return mv.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'lc_coordinator'")[1]
    end).pid
    mv.query("SELECT pg_terminate_backend($1)", coordinator)
    P.wait_for("the coordinator's session to end", function()
      return not mv.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", coordinator)[1]
    end)
    mv.exec("INSERT INTO lc_gate VALUES (true)") -- only now may lc_up end (and fail)
    local r = P.wait(p)
    assert.are.equal(0, r.code, r.err)
    assert.matches("^matviews: refresh coordinator lost its connection %([^\n]+%); reconnecting\n"
      .. "matviews: refresh coordinator reconnected\n$", r.err)
    assert.are.equal("2\t0\t1\t1\nlc_up\tfailed\ttrue\tdivision by zero\n"
      .. "lc_down\tskipped\ttrue\tnot refreshed: upstream lc_up failed\n", r.out)
    local down = P.runs("refresh", "lc_down")
    assert.are.same({ 3, "not refreshed: upstream lc_up failed" }, { down[#down].status, down[#down].error })
    P.wait_for("no worker left", function() return #mv.query(OTHERS) == 0 end)
  end)
end)

describe("a worker across a server restart (pg_ctl -m fast stop; start)", function()
  local cluster, conn

  setup(function()
    H.fresh_db()
    cluster = P.own_cluster(55495)
    conn = mv.connect(cluster.dsn)
    mv.init(conn)
    conn:exec("CREATE TABLE items (id int PRIMARY KEY)")
    mv.definitions.save({ name = "lc_v", sql = "SELECT id FROM items" }, conn)
    assert.are.equal("success", mv.jobs.create("lc_v", { conn = conn }).status)
    conn:close()
  end)

  teardown(function()
    if conn then conn:close() end
    if cluster then cluster.destroy() end
  end)

  it("says so once, reconnects with backoff, and runs the jobs queued after", function()
    local p = P.spawn("--dsn " .. H.q(cluster.dsn) .. " worker --poll-ms 200")
    conn = mv.connect(cluster.dsn)
    P.wait_for("the worker polling", function()
      return conn:query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'UPDATE matviews_jobs j SET status = 1%'")[1]
    end)
    conn:close()
    conn = nil
    assert.are.equal(0, cluster.ctl("stop").code)
    mv.core.sys.sleep_ms(300) -- down for a while: the worker tries again meanwhile
    assert.are.equal(0, cluster.ctl("start").code)
    local r = H.mv("--dsn " .. H.q(cluster.dsn) .. " enqueue refresh lc_v")
    assert.are.equal(0, r.code, r.err)
    conn = mv.connect(cluster.dsn)
    P.wait_for("the queued job to be done", function()
      return conn:query("SELECT 1 FROM matviews_jobs WHERE status = 2")[1]
    end)
    P.kill(P.pid(p), "TERM")
    r = P.wait(p)
    assert.are.equal(143, r.code, r.err)
    assert.matches("^matviews: worker lost its connection %([^\n]*%); reconnecting\nmatviews: worker reconnected\n$", r.err)
    assert.matches("job %d+ refresh [%w_.]*lc_v: success", r.out)
  end)
end)
