-- The overlap policy (on_overlap = wait | skip | queue): what a job does
-- when another run of its view is in progress. skip records a success that
-- did nothing (meta.skipped = "running" and the id of the run in
-- progress); queue coalesces into one follow-up run; wait (the default)
-- waits as before.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local SLOW = "SELECT x FROM ov_src, pg_sleep(CASE WHEN (SELECT slow FROM ov_ctl) THEN 30 ELSE 0 END)"

-- Waits (deadline 60 s) until cond() is true.
local function await(what, cond)
  local deadline = mv.core.sys.monotonic_ms() + 60000
  while not cond() do
    assert(mv.core.sys.monotonic_ms() < deadline, "timed out waiting for " .. what)
    mv.core.sys.sleep_ms(20)
  end
end

local function running_refresh()
  return mv.query([[SELECT r.id FROM mat_view_refresh_runs r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
    WHERE d.name = 'ov_v' AND r.status = 1 ORDER BY r.id LIMIT 1]])[1]
end

-- Starts `matviews ARGS` in the background; returns a function that waits
-- for it and gives { code, out }.
local function spawn(args)
  local out = H.tmpfile(".out")
  local pid = H.sh(("%s %s >%s 2>&1 & echo $!"):format(H.bin, args, H.q(out))).out:match("%d+")
  return function()
    await("pid " .. pid, function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end)
    return H.slurp(out)
  end
end

-- Makes the refresh of ov_v slow (30 s) until release() is called, which
-- cancels the slow statement.
local function hold()
  mv.exec("UPDATE ov_ctl SET slow = true")
  local done = spawn("refresh ov_v --yes")
  await("the slow refresh", function() return running_refresh() ~= nil end)
  await("the slow statement", function()
    return #mv.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'REFRESH MATERIALIZED VIEW%ov_v%' AND state = 'active'") > 0
  end)
  return running_refresh().id, function()
    mv.exec("UPDATE ov_ctl SET slow = false")
    mv.exec("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'REFRESH MATERIALIZED VIEW%ov_v%' AND state = 'active'")
    return done()
  end
end

describe("the overlap policy", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE ov_src (x int)")
    mv.exec("INSERT INTO ov_src VALUES (1)")
    mv.exec("CREATE TABLE ov_ctl (slow boolean)")
    mv.exec("INSERT INTO ov_ctl VALUES (false)")
    mv.definitions.save({ name = "ov_v", sql = SLOW })
    assert.are.equal("success", mv.create("ov_v").status)
  end)
  before_each(function() mv.exec("TRUNCATE mat_view_refresh_runs, matviews_jobs") end)

  it("skip records a success that did nothing, naming the run in progress", function()
    local id, release = hold()
    local r = H.mv("refresh ov_v --on-overlap skip --yes --json")
    assert.are.equal(0, r.code, r.err)
    local run = cjson.decode(r.out)[1]
    assert.are.same({ "success", "running", id }, { run.status, run.meta.skipped, math.tointeger(run.meta.running_run_id) })
    r = H.mv("refresh ov_v --on-overlap skip --yes")
    assert.are.equal(0, r.code)
    assert.matches("^%[1/1%] refresh ov_v: skipped: refresh run " .. id .. " is running\n$", r.out)
    release()
    local rows = mv.query("SELECT status, meta->>'skipped' AS skipped FROM mat_view_refresh_runs ORDER BY id")
    assert.are.equal(3, #rows)
    assert.are.same({ 2, "running" }, { rows[2].status, rows[2].skipped })
  end)

  it("queue runs one follow-up after the current run, however many ask", function()
    local _, release = hold()
    local follow = spawn("refresh ov_v --on-overlap queue --yes")
    -- the first one to find the view busy holds the follow-up lock
    await("the follow-up", function()
      return #mv.query([[SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
        AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('matviews-follow:public.ov_v', 0)]]) > 0
    end)
    local r = H.mv("refresh ov_v --on-overlap queue --yes --json")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("queued", cjson.decode(r.out)[1].meta.skipped)
    release()
    assert.matches("refresh ov_v: success", follow())
    local rows = mv.query([[SELECT count(*) FILTER (WHERE meta->>'skipped' IS NULL AND status = 2)::int AS ran,
      count(*) FILTER (WHERE meta->>'skipped' = 'queued')::int AS coalesced FROM mat_view_refresh_runs]])[1]
    assert.are.same({ ran = 1, coalesced = 1 }, rows) -- the held one was cancelled; the follow-up ran
  end)

  it("follows the definition's policy, and the configuration's default", function()
    mv.definitions.save({ name = "ov_v", sql = SLOW, options = { on_overlap = "skip" } })
    local id, release = hold()
    local r = H.mv("refresh ov_v --yes --json")
    assert.are.equal("running", cjson.decode(r.out)[1].meta.skipped)
    -- a worker running a queued job follows it too
    assert.are.equal(0, H.mv("enqueue refresh ov_v").code)
    r = H.mv("worker --once --json")
    assert.are.equal(0, r.code, r.out)
    local run = mv.query([[SELECT r.meta->>'skipped' AS skipped, (r.meta->>'running_run_id')::bigint AS rid
      FROM matviews_jobs j JOIN mat_view_refresh_runs r ON r.id = j.run_id]])[1]
    assert.are.same({ skipped = "running", rid = id }, run)
    release()
    mv.definitions.save({ name = "ov_v", sql = SLOW })
    local cfg = H.write(H.tmpfile(".lua"), 'on_overlap = "skip"\n')
    id, release = hold()
    r = H.mv("--config " .. H.q(cfg) .. " refresh ov_v --yes --json")
    assert.are.equal("running", cjson.decode(r.out)[1].meta.skipped)
    release()
  end)
end)
