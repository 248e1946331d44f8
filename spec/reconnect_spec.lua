-- A long-running worker whose connection is lost (pg_terminate_backend, as
-- a server restart or an administrator does) says so once on stderr,
-- reconnects with backoff and goes on running queued jobs; SIGTERM stops it.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local OTHERS = P.OTHERS

describe("the worker", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "rc_v", sql = "SELECT 1 AS x" })
    mv.exec("CREATE MATERIALIZED VIEW rc_v AS SELECT 1 AS x")
  end)

  it("reconnects after its session is terminated and runs the jobs queued after", function()
    local p = P.spawn("worker --poll-ms 100")
    local pid = P.pid(p)
    -- polling: its session has claimed (found nothing) at least once
    P.wait_for("the worker polling", function()
      return mv.query(OTHERS .. " AND query LIKE 'UPDATE matviews_jobs j SET status = 1%'")[1]
    end)
    mv.query("SELECT pg_terminate_backend(pid) FROM (" .. OTHERS .. ") o")
    assert.are.equal(0, H.mv("enqueue refresh rc_v").code)
    local ok, e = pcall(P.wait_for, "the queued job to be done", function()
      return mv.query("SELECT 1 FROM matviews_jobs WHERE status = 2")[1]
    end)
    assert(ok, tostring(e) .. ": " .. H.slurp(p.err) .. H.slurp(p.out))
    P.kill(pid, "TERM")
    local r = P.wait(p)
    assert.are.equal(143, r.code, r.err)
    local _, said = r.err:gsub("worker lost its connection %(", "")
    assert.are.equal(1, said, r.err)
    assert.matches("matviews: worker lost its connection %([^\n]*terminating connection due to administrator command[^\n]*%); reconnecting\n"
      .. "matviews: worker reconnected\n", r.err)
    assert.matches("job %d+ refresh [%w_.]*rc_v: success", r.out)
  end)
end)

describe("a connection refused for lack of slots", function()
  setup(function()
    H.fresh_db()
    mv.exec("DROP ROLE IF EXISTS rc_limited")
    mv.exec("CREATE ROLE rc_limited LOGIN CONNECTION LIMIT 1")
  end)

  it("is tried again with backoff, said once, and goes on when a slot frees", function()
    local holder = mv.connect("dbname=" .. H.dbname .. " user=rc_limited")
    local p = P.spawn("-e " .. H.q("print(mv.query('SELECT current_user AS u')[1].u)"), { env = { PGUSER = "rc_limited" } })
    P.wait_for("the refusal to be said", function() return H.slurp(p.err):find("no free connection slot", 1, true) end)
    holder:close()
    local r = P.wait(p)
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("rc_limited\n", r.out)
    assert.are.equal("matviews: the server has no free connection slot; trying again for up to 30 s\n", r.err)
  end)
end)

describe("worker --concurrency", function()
  setup(function() H.fresh_db(); mv.init() end)

  it("passes a SIGTERM sent to the parent alone on to its children", function()
    local p = P.spawn("worker --concurrency 3 --poll-ms 100")
    local pid = P.pid(p)
    local CLAIMS = OTHERS .. " AND query LIKE 'UPDATE matviews_jobs j SET status = 1%'"
    P.wait_for("three workers polling", function() return #mv.query(CLAIMS) == 3 end)
    P.kill(pid, "TERM")
    assert.are.equal(143, P.wait(p).code)
    P.wait_for("the children to end", function() return #mv.query(OTHERS) == 0 end)
  end)
end)

describe("the scheduler", function()
  setup(function() H.fresh_db(); mv.init() end)

  it("reconnects after its session is terminated, and stops on SIGTERM", function()
    local p = P.spawn("scheduler")
    local pid = P.pid(p)
    P.wait_for("the scheduler's turn", function()
      return mv.query(OTHERS .. " AND query LIKE '%clock_timestamp()) % 1%'")[1]
    end)
    mv.query("SELECT pg_terminate_backend(pid) FROM (" .. OTHERS .. ") o")
    P.wait_for("the scheduler to reconnect", function() return H.slurp(p.err):find("scheduler reconnected", 1, true) end)
    P.kill(pid, "TERM")
    local r = P.wait(p)
    assert.are.equal(143, r.code, r.err)
    local _, said = r.err:gsub("lost its connection", "")
    assert.are.equal(1, said, r.err)
  end)
end)
