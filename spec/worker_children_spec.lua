-- `worker --concurrency N`: the children's output and their life. With
-- --json each child writes its document to a socket the parent reads (no
-- temporary file, so nothing is left whatever ends the processes); a child
-- stops when its parent dies, even of a signal it cannot pass on (SIGKILL,
-- SIGPIPE from `| head -1`).
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local OTHERS = P.OTHERS
local CLAIMS = OTHERS .. " AND query LIKE 'UPDATE matviews_jobs j SET status = 1%'"

-- The pids of the children of pid.
local function children(pid)
  local out = {}
  for c in H.sh("pgrep -P " .. pid).out:gmatch("%d+") do out[#out + 1] = tonumber(c) end
  return out
end

-- What the descriptors of pid point at: { [fd] = target }.
local function fds(pid)
  local out = {}
  for _, fd in ipairs(mv.core.sys.listdir("/proc/" .. pid .. "/fd") or {}) do
    out[tonumber(fd)] = H.sh("readlink /proc/" .. pid .. "/fd/" .. fd).out:gsub("\n$", "")
  end
  return out
end

-- The files (paths) that pid holds open outside the spec run's directory
-- and /dev.
local function files_held(pid)
  local out = {}
  for _, target in pairs(fds(pid)) do
    if target:sub(1, 1) == "/" and target:sub(1, #H.tmp + 1) ~= H.tmp .. "/" and not target:match("^/dev/") then
      out[#out + 1] = target
    end
  end
  table.sort(out)
  return out
end

describe("worker --concurrency", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "wc_v", sql = "SELECT 1 AS x FROM pg_sleep(0.05)" })
    mv.exec("CREATE MATERIALIZED VIEW wc_v AS SELECT 1 AS x")
  end)

  before_each(function()
    P.wait_for("no worker left", function() return #mv.query(OTHERS) == 0 end)
    mv.exec("DELETE FROM matviews_jobs")
  end)

  -- Starts `ARGS` and waits until three workers poll; returns p, pid, kids.
  local function three_polling(args)
    local p = P.spawn(args)
    local pid = P.pid(p)
    P.wait_for("three workers polling", function() return #mv.query(CLAIMS) == 3 end)
    return p, pid, children(pid)
  end

  it("--json: the children write to sockets, hold no file, and SIGINT leaves nothing behind", function()
    local p, pid, kids = three_polling("--json worker --concurrency 3 --poll-ms 100")
    assert.are.equal(2, #kids)
    for _, kid in ipairs(kids) do
      assert.matches("^socket:", fds(kid)[1])
      assert.are.same({}, files_held(kid))
    end
    assert.are.same({}, files_held(pid))
    P.kill(pid, "INT")
    local r = P.wait(p)
    assert.are.equal(130, r.code, r.err)
    P.wait_for("the children to end", function() return #mv.query(OTHERS) == 0 end)
  end)

  it("--json: merges the children's documents through the sockets", function()
    for _ = 1, 12 do assert.are.equal(0, H.mv("enqueue refresh wc_v").code) end
    local r = H.mv("--json worker --once --concurrency 3")
    assert.are.equal(0, r.code, r.err)
    local doc = mv.json.decode(r.out)
    assert.are.equal(12, #doc.processed)
    for _, job in ipairs(doc.processed) do assert.are.equal("success", job.status) end
  end)

  it("the children stop when the parent is killed (SIGKILL), leaving no file", function()
    local _, pid, kids = three_polling("--json worker --concurrency 3 --poll-ms 100")
    local held = {}
    for _, kid in ipairs(kids) do for _, f in ipairs(files_held(kid)) do held[#held + 1] = f end end
    P.kill(pid, "KILL")
    P.wait_for("the children to end", function() return #mv.query(OTHERS) == 0 end)
    for _, f in ipairs(held) do assert.is_false(require("matviews.files").exists(f), f .. " was left behind") end
    assert.are.same({}, held)
  end)

  it("| head -1: the parent dies of SIGPIPE, the children stop, no job is left claimed", function()
    for _ = 1, 40 do assert.are.equal(0, H.mv("enqueue refresh wc_v").code) end
    local r = H.sh(H.bin .. " worker --concurrency 3 --poll-ms 100 | head -1")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^job %d+ refresh [%w_.]*wc_v: success %(run %d+, %d+ ms%)\n$", r.out)
    P.wait_for("the children to end", function() return #mv.query(OTHERS) == 0 end)
    -- each job was done, failed (cancelled by the stop) or never claimed
    assert.are.same({}, mv.query("SELECT id FROM matviews_jobs WHERE status = 1"))
  end)
end)

describe("refresh --parallel", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "wc_0", sql = "SELECT 1 AS x FROM pg_sleep(30)" })
    mv.exec("CREATE MATERIALIZED VIEW wc_0 AS SELECT 1 AS x FROM pg_sleep(30) WITH NO DATA")
    for i = 1, 3 do
      mv.definitions.save({ name = "wc_" .. i, sql = "SELECT 1 AS x" })
      mv.exec(("CREATE MATERIALIZED VIEW wc_%d AS SELECT 1 AS x"):format(i))
    end
  end)

  it("passes a SIGTERM sent to the parent alone on to its workers: cancelled, recorded, exit 143", function()
    local p = P.spawn("--yes refresh wc_0 wc_1 wc_2 wc_3 --parallel 1")
    P.wait_query("REFRESH MATERIALIZED VIEW%wc_0%")
    P.kill(P.pid(p), "TERM")
    local r = P.wait(p)
    assert.are.equal(143, r.code, r.err)
    assert.matches("interrupted: 3 not started\n$", r.err)
    local runs = P.runs("refresh", "wc_0")
    assert.are.same({ 3, "canceling statement due to user request" }, { runs[1].status, runs[1].error })
    for i = 1, 3 do assert.are.same({}, P.runs("refresh", "wc_" .. i)) end
    P.wait_for("the workers to end", function() return #mv.query(OTHERS) == 0 end)
  end)
end)
