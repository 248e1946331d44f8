-- One timestamp format: every table and --json document writes times as ISO
-- 8601 to the second with the offset, in the session's time zone (here PGTZ
-- = Asia/Kolkata, +05:30, a zone no machine runs the specs in by accident).
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%+%-]%d%d:%d%d$"
local ENV = { env = { PGTZ = "Asia/Kolkata" } }

-- Every string value of doc (recursively) that looks like a time, a run's
-- meta included (its attempts' windows).
local function times(doc, out)
  out = out or {}
  if type(doc) == "table" then
    for _, v in pairs(doc) do times(v, out) end
  elseif type(doc) == "string" and doc:match("^%d%d%d%d%-%d%d%-%d%d") then
    out[#out + 1] = doc
  end
  return out
end

describe("timestamps", function()
  local dir
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "ts_a", sql = "SELECT 1 AS x", schedule_cron = "0 3 * * *" })
    mv.exec("UPDATE mat_view_definitions SET created_at = now() - interval '2 days'")
    dir = H.tmpfile("_proj")
    assert(os.execute("mkdir -p " .. H.q(dir .. "/migrations")))
    H.write(dir .. "/matviews.lua", "")
    H.write(dir .. "/migrations/001_x.lua", "return { up = function() end, down = function() end }\n")
    local cfg = "--config " .. H.q(dir .. "/matviews.lua")
    assert.are.equal(0, H.mv(cfg .. " migrate up").code)
    assert.are.equal(0, H.mv("create ts_a --yes").code)
    assert.are.equal(0, H.mv("refresh ts_a --yes").code)
    assert.are.equal(0, H.mv("worker --schedule --once").code)
  end)

  it("are ISO 8601 with the session's offset in every --json document", function()
    local cfg = "--config " .. H.q(dir .. "/matviews.lua")
    local seen = 0
    local rid = mv.query("SELECT max(id) AS id FROM mat_view_refresh_runs")[1].id
    assert.are.equal(0, H.mv("enqueue refresh ts_a").code)
    for _, cmd in ipairs({ "runs --json", "stats --json --since all", "list --json", "schedule --json",
                           cfg .. " migrate status --json", "refresh ts_a --yes --json", "create ts_a --force --yes --json",
                           "runs show refresh:" .. rid .. " --json", "history ts_a --json", "queue --json" }) do
      local r = H.mv(cmd, ENV)
      assert.are.equal(0, r.code, cmd .. ": " .. r.err)
      local found = times(cjson.decode(r.out))
      assert.is_true(#found > 0, cmd)
      for _, t in ipairs(found) do
        assert.matches(ISO, t, 1, cmd)
        assert.are.equal("+05:30", t:sub(-6), cmd)
        seen = seen + 1
      end
    end
    assert.is_true(seen >= 16)
  end)

  it("are the same text in the tables", function()
    local json = cjson.decode(H.mv("runs --json --limit 1", ENV).out)[1].started_at
    assert.truthy(H.mv("runs --limit 1", ENV).out:find(json, 1, true))
    local list = cjson.decode(H.mv("list --json", ENV).out)
    assert.truthy(H.mv("list", ENV).out:find(list[1].last_run_at, 1, true))
    local sched = cjson.decode(H.mv("schedule --json", ENV).out)
    assert.truthy(H.mv("schedule", ENV).out:find(sched.definitions[1].next_run, 1, true))
    -- the instant is the same whatever the zone
    local utc = cjson.decode(H.mv("runs --json --limit 1").out)[1].started_at
    assert.are.equal("+00:00", utc:sub(-6))
    local function epoch(t) return mv.query("SELECT extract(epoch FROM $1::timestamptz)::bigint AS e", t)[1].e end
    assert.are.equal(epoch(utc), epoch(json))
    local rid = mv.query("SELECT max(id) AS id FROM mat_view_refresh_runs")[1].id
    local run = cjson.decode(H.mv("runs show refresh:" .. rid .. " --json", ENV).out)
    local shown = H.mv("runs show refresh:" .. rid, ENV).out
    assert.truthy(shown:find(run.started_at, 1, true))
    assert.truthy(shown:find(run.meta.attempts[1].started_at, 1, true), shown)
    assert.matches("%+05:30$", run.meta.attempts[1].finished_at)
    -- reconcile's mark on an orphaned run, written in another zone
    local orphan = mv.query([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, backend_pid)
      SELECT id, 1, now(), 2147483647 FROM mat_view_definitions WHERE name = 'ts_a' RETURNING id]])[1].id
    assert.are.equal(0, H.mv("reconcile", { env = { PGTZ = "America/New_York" } }).code)
    local rec = cjson.decode(H.mv("runs show refresh:" .. orphan .. " --json", ENV).out)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%+05:30$", rec.meta.reconciled_at)
    local hist = cjson.decode(H.mv("history ts_a --json", ENV).out)
    assert.truthy(H.mv("history ts_a", ENV).out:find(hist[1].created_at, 1, true))
  end)
end)
