-- Scheduling: due slots claimed once in the database (three processes
-- ticking at once), missed slots collapsed into one run, `matviews schedule`.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function define(name, cron, created_at)
  mv.exec([[INSERT INTO mat_view_definitions (name, sql, schedule_cron, created_at)
            VALUES ($1, 'SELECT 1', $2, coalesce($3::timestamptz, now()))]], name, cron, created_at)
end

local function at(iso) return mv.query("SELECT floor(extract(epoch FROM $1::timestamptz))::bigint AS t", iso)[1].t end

-- The enqueue used by these specs: records the slot in a table, inside the
-- claiming transaction (the default enqueues a queued refresh job).
local ENQUEUE = [[function(def, slot, c)
  c:exec("INSERT INTO enqueued (name, slot) VALUES ($1, $2)", def.name, slot)
  return { name = def.name }
end]]
local enqueue = load("return " .. ENQUEUE)()

local function enqueued(name)
  local out = {}
  for _, r in ipairs(mv.query("SELECT slot FROM enqueued WHERE name = $1 ORDER BY slot", name)) do
    out[#out + 1] = mv.core.cron_format(r.slot)
  end
  return out
end

describe("schedule.tick", function()
  local schedule = require "matviews.schedule"
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE enqueued (name text, slot bigint)")
  end)

  it("runs a slot missed while no worker ran once, not once per missed slot", function()
    define("hourly", "0 * * * *", "2026-11-26T08:30:00Z")
    local r = schedule.tick(at("2026-11-26T12:10:00Z"), { enqueue = enqueue })
    assert.are.same({ { name = "hourly", slot = at("2026-11-26T12:00:00Z"), job = { name = "hourly" } } }, r.claimed)
    assert.are.same({}, schedule.tick(at("2026-11-26T12:59:59Z"), { enqueue = enqueue }).claimed)
    assert.are.equal(1, #schedule.tick(at("2026-11-26T13:00:00Z"), { enqueue = enqueue }).claimed)
    assert.are.equal(1, #schedule.tick(at("2026-11-26T18:05:00Z"), { enqueue = enqueue }).claimed)
    assert.are.same({ "2026-11-26T12:00:00Z", "2026-11-26T13:00:00Z", "2026-11-26T18:00:00Z" }, enqueued("hourly"))
  end)

  it("does not run slots from before the definition existed", function()
    mv.exec("TRUNCATE mat_view_definitions CASCADE") -- runs too: a DELETE keeps them (RESTRICT)
    define("yearly", "0 0 1 1 *", "2026-11-26T08:30:00Z")
    assert.are.same({}, schedule.tick(at("2026-12-31T23:59:00Z"), { enqueue = enqueue }).claimed)
    local r = schedule.tick(at("2027-01-01T00:00:30Z"), { enqueue = enqueue })
    assert.are.same({ "yearly" }, { r.claimed[1] and r.claimed[1].name })
    assert.are.same({ "2027-01-01T00:00:00Z" }, enqueued("yearly"))
  end)

  it("claims a slot exactly once with three processes ticking at the same time", function()
    define("every5", "*/5 * * * *", "2026-11-26T08:00:00Z")
    local code = ([[
      local slow = %s
      local r = require("matviews.schedule").tick(%d, { enqueue = function(def, slot, c)
        c:exec("SELECT pg_sleep(0.3)") -- hold the claim open while the others try
        return slow(def, slot, c)
      end })
      for _, c in ipairs(r.claimed) do if c.name == "every5" then print("won") end end
    ]]):format(ENQUEUE, at("2026-11-26T09:07:00Z"))
    local cmd = H.bin .. " -e " .. H.q(code)
    local r = H.sh(cmd .. " & " .. cmd .. " & " .. cmd .. " & wait")
    assert.are.equal("", r.err)
    assert.are.equal("won\n", r.out)
    assert.are.same({ "2026-11-26T09:05:00Z" }, enqueued("every5"))
    assert.are.equal(1, mv.query([[SELECT count(*) AS n FROM mat_view_schedule_slots s
      JOIN mat_view_definitions d ON d.id = s.mat_view_definition_id WHERE d.name = 'every5']])[1].n)
  end)

  it("enqueues a refresh job on the queue by default, which a worker then runs", function()
    mv.exec("TRUNCATE mat_view_definitions CASCADE") -- runs too: a DELETE keeps them (RESTRICT)
    mv.exec("CREATE MATERIALIZED VIEW sched_mv AS SELECT 1 AS one")
    mv.exec([[INSERT INTO mat_view_definitions (name, sql, schedule_cron, created_at)
              VALUES ('sched_mv', 'SELECT 1 AS one', '*/10 * * * *', '2026-11-26T08:00:00Z')]])
    local r = schedule.tick(at("2026-11-26T09:15:00Z"))
    assert.are.equal(1, #r.claimed)
    assert.are.same({ true, "refresh", "sched_mv" }, { r.claimed[1].job.queued, r.claimed[1].job.op, r.claimed[1].job.view })
    local job = mv.query("SELECT op, status FROM matviews_jobs WHERE id = $1", r.claimed[1].job.job_id)[1]
    assert.are.same({ op = "refresh", status = 0 }, job)
    local slot = mv.query("SELECT job->>'job_id' AS j FROM mat_view_schedule_slots")[1]
    assert.are.equal(tostring(r.claimed[1].job.job_id), slot.j)
    local done = require("matviews.queue").work_one()
    assert.are.same({ "refresh", "sched_mv", "success" }, { done.op, done.view, done.status })
    mv.exec("TRUNCATE mat_view_definitions CASCADE") -- runs too: a DELETE keeps them (RESTRICT)
  end)

  it("reports a bad cron expression without stopping the others", function()
    define("broken", "61 * * * *")
    define("minutely", "* * * * *", "2026-11-26T08:00:00Z")
    local r = schedule.tick(at("2026-11-26T10:00:00Z"), { enqueue = enqueue })
    assert.are.same({ { name = "broken",
      error = 'invalid cron expression "61 * * * *": minute: 61 is out of range 0-59' } }, r.errors)
    assert.are.same({ "2026-11-26T10:00:00Z" }, enqueued("minutely"))
    mv.exec("DELETE FROM mat_view_definitions WHERE name IN ('broken', 'minutely')")
  end)
end)

describe("matviews worker --schedule", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE MATERIALIZED VIEW yearly_mv AS SELECT 1 AS one")
    mv.exec("CREATE MATERIALIZED VIEW daily_mv AS SELECT 1 AS one")
  end)

  local function count(sql, name) return mv.query(sql, name)[1].n end
  local SLOTS = [[SELECT count(*)::int AS n FROM mat_view_schedule_slots s
    JOIN mat_view_definitions d ON d.id = s.mat_view_definition_id WHERE d.name = $1]]
  local RUNS = [[SELECT count(*)::int AS n FROM mat_view_refresh_runs r
    JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE d.name = $1 AND r.status = 2]]

  it("queues and runs a due slot exactly once with three workers running", function()
    mv.exec([[INSERT INTO mat_view_definitions (name, sql, schedule_cron, created_at)
              VALUES ('yearly_mv', 'SELECT 1 AS one', '0 0 1 1 *', now() - interval '2 years')]])
    local cmd = H.bin .. " worker --schedule --once"
    local YEAR = "SELECT extract(year FROM now() AT TIME ZONE 'UTC')::int AS y"
    local y0 = mv.query(YEAR)[1].y
    local r = H.sh(cmd .. " & " .. cmd .. " & " .. cmd .. " & wait")
    local year = mv.query(YEAR)[1].y
    if year ~= y0 then year = "%d+" end -- the new year began meanwhile: either slot
    local _, scheduled = r.out:gsub("scheduled refresh of yearly_mv for " .. year .. "%-01%-01T00:00:00%+00:00 %(job %d+%)\n", "")
    local _, ran = r.out:gsub("job %d+ refresh yearly_mv: success", "")
    assert.are.same({ 1, 1 }, { scheduled, ran }, r.out .. r.err)
    assert.are.equal(1, count(SLOTS, "yearly_mv"))
    assert.are.equal(1, count(RUNS, "yearly_mv"))
  end)

  it("runs slots missed while no worker ran once on start", function()
    mv.exec([[INSERT INTO mat_view_definitions (name, sql, schedule_cron, created_at)
              VALUES ('daily_mv', 'SELECT 1 AS one', '0 0 * * *', now() - interval '5 days')]])
    local r = H.mv("worker --schedule --once --json")
    assert.are.equal(0, r.code, r.err)
    local doc = cjson.decode(r.out)
    local names = {}
    for _, s in ipairs(doc.scheduled) do names[#names + 1] = s.view end
    assert.are.same({ "daily_mv" }, names)
    assert.are.equal(1, count(SLOTS, "daily_mv"))
    assert.are.equal(1, count(RUNS, "daily_mv"))
    r = H.mv("worker --schedule --once")
    assert.are.equal(0, r.code)
    assert.is_nil(r.out:find("scheduled refresh", 1, true))
  end)
end)

describe("matviews schedule", function()
  setup(function()
    H.fresh_db()
    mv.init()
    define("nightly", "30 2 * * *")
    define("plain", nil)
  end)

  it("lists the next run of each definition", function()
    local NEXT = [[SELECT to_char(CASE WHEN now() AT TIME ZONE 'UTC' < date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2h30m'
        THEN date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2h30m'
        ELSE date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day 2h30m' END, 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"') AS t]]
    local before = mv.query(NEXT)[1].t
    local r = H.mv("schedule --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.equal("UTC", doc.time_zone)
    -- 02:30 UTC may pass while the command runs: then either slot is right.
    local want = mv.query(NEXT)[1].t
    if doc.definitions[1].next_run == before then want = before end
    assert.are.same({ name = "nightly", schedule = "30 2 * * *", next_run = want,
      last_slot = cjson.null, error = cjson.null, unclaimed_since = cjson.null }, doc.definitions[1])
    assert.are.equal("plain", doc.definitions[2].name)
    assert.are.equal(cjson.null, doc.definitions[2].next_run)
    r = H.mv("schedule")
    assert.matches("^view +schedule +next run +last slot run  error\n", r.out)
    assert.matches("\n%(schedules are read in UTC%)\n$", r.out)
    assert.truthy(r.out:find("\nnightly  30 2 * * *  " .. want .. "\n", 1, true))
  end)

  it("reads the schedule in the configured zone", function()
    local cfg = H.write(H.tmpfile(".lua"), 'time_zone = "America/New_York"\n')
    local r = H.mv("--config " .. H.q(cfg) .. " schedule --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.equal("America/New_York", doc.time_zone)
    -- shown in the session's zone: UTC here, New York's own with PGTZ
    assert.matches("^%d+%-%d+%-%d+T0[67]:30:00%+00:00$", doc.definitions[1].next_run)
    doc = cjson.decode(H.mv("--config " .. H.q(cfg) .. " schedule --json", { env = { PGTZ = "America/New_York" } }).out)
    assert.matches("^%d+%-%d+%-%d+T02:30:00%-0[45]:00$", doc.definitions[1].next_run)
    H.write(cfg, 'time_zone = "Mars/Olympus"\n')
    r = H.mv("--config " .. H.q(cfg) .. " schedule")
    assert.are.equal(1, r.code)
    assert.are.equal('matviews: unknown time zone "Mars/Olympus" (config time_zone)\n', r.err)
  end)

  it("exits 1 naming a definition whose cron is invalid", function()
    define("bad", "* * *")
    local id = mv.query("SELECT id FROM mat_view_definitions WHERE name = 'bad'")[1].id
    local r = H.mv("schedule")
    assert.are.equal(1, r.code)
    assert.are.equal(('matviews: definition %d "bad" in mat_view_definitions is corrupt: invalid schedule_cron: "* * *": '
      .. 'expected 5 fields (minute hour day-of-month month day-of-week), got 3\n'):format(id), r.err)
  end)
end)

describe("matviews scheduler", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE MATERIALIZED VIEW every_second AS SELECT 1 AS one")
  end)

  -- Waits until each file in files holds "turn T" (with a deadline).
  local function await_turn(files, t)
    local deadline = mv.core.sys.monotonic_ms() + 60000
    for _, f in ipairs(files) do
      while not H.slurp(f):find("turn " .. t .. "\n", 1, true) do
        assert(mv.core.sys.monotonic_ms() < deadline, "no turn " .. t .. " in " .. f .. ": " .. H.slurp(f))
        mv.core.sys.sleep_ms(20)
      end
    end
  end

  it("with two schedulers running, fires three 1-second slots exactly once each", function()
    local t0 = mv.query("SELECT floor(extract(epoch FROM now()))::bigint + 100 AS t")[1].t
    mv.exec([[INSERT INTO mat_view_definitions (name, sql, schedule_cron, created_at)
              VALUES ('every_second', 'SELECT 1 AS one', '1 second', to_timestamp($1))]], t0)
    local clock, outs, pids = H.tmpfile(".clock"), {}, {}
    H.write(clock, "")
    for i = 1, 2 do
      outs[i] = H.tmpfile(".out")
      pids[i] = H.sh(("%s scheduler --clock %s >%s 2>&1 & echo $!"):format(H.bin, H.q(clock), H.q(outs[i]))).out:match("%d+")
    end
    for t = t0 + 1, t0 + 3 do
      H.write(clock, tostring(t))
      await_turn(outs, t) -- both schedulers tried the slot
    end
    for _, pid in ipairs(pids) do os.execute("kill " .. pid) end
    local slots = mv.query([[SELECT floor(extract(epoch FROM slot_time))::bigint - $1 AS s, count(*)::int AS n
      FROM mat_view_schedule_slots GROUP BY 1 ORDER BY 1]], t0)
    assert.are.same({ { s = 1, n = 1 }, { s = 2, n = 1 }, { s = 3, n = 1 } }, slots)
    assert.are.equal(3, mv.query("SELECT count(*)::int AS n FROM matviews_jobs WHERE op = 'refresh'")[1].n)
    local _, said = (H.slurp(outs[1]) .. H.slurp(outs[2])):gsub("scheduled refresh of every_second for ", "")
    assert.are.equal(3, said)
  end)

  it("queues a due slot with --once; `schedule` warns when no scheduler claimed a slot in two periods", function()
    mv.exec("DELETE FROM mat_view_schedule_slots")
    mv.exec("DELETE FROM matviews_jobs")
    mv.exec([[UPDATE mat_view_definitions SET schedule_cron = '*/5 * * * *', created_at = now() - interval '1 hour'
              WHERE name = 'every_second']])
    local r = H.mv("schedule")
    assert.are.equal(0, r.code)
    assert.matches("^matviews: warning: no scheduler has claimed a slot of every_second since "
      .. "%d+%-%d+%-%d+T%d+:%d+:00%+00:00 %(two periods%): is `matviews scheduler` %(or `worker %-%-schedule`%) running%?\n$", r.err)
    r = H.mv("scheduler --once --json")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("every_second", cjson.decode(r.out).scheduled[1].view)
    r = H.mv("schedule")
    assert.are.equal("", r.err)
    -- a definition younger than two periods is not warned about
    mv.exec("DELETE FROM mat_view_schedule_slots")
    mv.exec("UPDATE mat_view_definitions SET created_at = now() - interval '4 minutes'")
    assert.are.equal("", H.mv("schedule").err)
  end)
end)
