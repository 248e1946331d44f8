-- The cron evaluator (src/cron.c through mv.core.cron_*): a table of known
-- next/previous fire times (month ends, leap years, weekdays, the dom/dow
-- rule, DST in a named zone) and the exact messages of bad expressions.
local mv = require "matviews"
local core = mv.core

-- UTC seconds of "YYYY-MM-DDTHH:MM:SSZ" (proleptic Gregorian, no os.time).
local function epoch(iso)
  local y, m, d, H, M, S = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return days * 86400 + tonumber(H) * 3600 + tonumber(M) * 60 + tonumber(S)
end

local function next_of(expr, after, zone)
  local t, err = core.cron_next(expr, epoch(after), zone)
  assert(t, err)
  return core.cron_format(t, zone)
end

describe("cron next fire time", function()
  local cases = {
    -- expression, after (UTC), zone, expected (in the zone)
    { "0 0 * * *", "2026-01-31T12:00:00Z", nil, "2026-02-01T00:00:00Z" },
    { "0 12 31 * *", "2026-01-31T12:00:00Z", nil, "2026-03-31T12:00:00Z" },
    { "0 0 30 * *", "2026-01-30T00:00:00Z", nil, "2026-03-30T00:00:00Z" },
    { "0 0 29 2 *", "2026-01-31T12:00:00Z", nil, "2028-02-29T00:00:00Z" },
    { "0 0 29 2 *", "2096-03-01T00:00:00Z", nil, "2104-02-29T00:00:00Z" },
    { "0 0 29 feb *", "2000-01-01T00:00:00Z", nil, "2000-02-29T00:00:00Z" },
    { "*/15 * * * *", "2026-11-26T10:07:30Z", nil, "2026-11-26T10:15:00Z" },
    { "*/15 * * * *", "2026-11-26T23:59:00Z", nil, "2026-11-27T00:00:00Z" },
    { "59 23 31 12 *", "2026-12-31T23:59:00Z", nil, "2027-12-31T23:59:00Z" },
    { "0 9 * * mon-fri", "2026-11-27T09:00:00Z", nil, "2026-11-30T09:00:00Z" },
    { "0 0 13 * 5", "2026-11-26T12:00:00Z", nil, "2026-11-27T00:00:00Z" },   -- 13th OR Friday
    { "0 0 13 * *", "2026-11-26T12:00:00Z", nil, "2026-12-13T00:00:00Z" },
    { "0 0 */2 * 5", "2026-11-27T12:00:00Z", nil, "2026-12-11T00:00:00Z" },  -- '*…' dom: odd day AND Friday
    { "0 0 * * 7", "2026-11-26T12:00:00Z", nil, "2026-11-29T00:00:00Z" },
    { "0 0 * * SUN", "2026-11-26T12:00:00Z", nil, "2026-11-29T00:00:00Z" },
    { "0 0 * * 5-7", "2026-11-28T12:00:00Z", nil, "2026-11-29T00:00:00Z" },
    { "0 0 1 jan,jul *", "2026-11-26T12:00:00Z", nil, "2027-01-01T00:00:00Z" },
    { "10-20/5 4 * * *", "2026-11-26T04:15:00Z", nil, "2026-11-26T04:20:00Z" },
    { "50/5 * * * *", "2026-11-26T04:56:00Z", nil, "2026-11-26T05:50:00Z" },
    { "@hourly", "2026-11-26T10:00:00Z", nil, "2026-11-26T11:00:00Z" },
    { "@yearly", "2026-11-26T10:00:00Z", nil, "2027-01-01T00:00:00Z" },
    { "0 9 * * *", "2026-06-01T00:00:00Z", "Europe/Paris", "2026-06-01T09:00:00+02:00" },
    { "0 9 * * *", "2026-12-01T00:00:00Z", "Europe/Paris", "2026-12-01T09:00:00+01:00" },
    -- spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 02:30 fires at the jump
    { "30 2 * * *", "2026-03-07T12:00:00Z", "America/New_York", "2026-03-08T03:00:00-04:00" },
    { "30 2 * * *", "2026-03-08T07:00:00Z", "America/New_York", "2026-03-09T02:30:00-04:00" },
    -- fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 fires once, the first time
    { "30 1 * * *", "2026-10-31T12:00:00Z", "America/New_York", "2026-11-01T01:30:00-04:00" },
    { "30 1 * * *", "2026-11-01T05:30:00Z", "America/New_York", "2026-11-02T01:30:00-05:00" },
    -- pg_cron's sub-minute form: every N seconds of the epoch, any zone
    { "30 seconds", "2026-11-26T10:07:30Z", nil, "2026-11-26T10:08:00Z" },
    { "1 second", "2026-11-26T10:07:30Z", nil, "2026-11-26T10:07:31Z" },
    { "15 Seconds", "2026-11-26T23:59:50Z", nil, "2026-11-27T00:00:00Z" },
    { "20 seconds", "2026-11-26T10:07:30Z", "Europe/Paris", "2026-11-26T11:07:40+01:00" },
  }
  for _, c in ipairs(cases) do
    it(("%s after %s%s is %s"):format(c[1], c[2], c[3] and (" in " .. c[3]) or "", c[4]), function()
      assert.are.equal(c[4], next_of(c[1], c[2], c[3]))
    end)
  end

  it("gives the previous fire time at or before a time", function()
    assert.are.equal("2026-11-26T10:00:00Z", core.cron_format(core.cron_prev("0 * * * *", epoch("2026-11-26T10:59:59Z"))))
    assert.are.equal("2026-11-26T10:00:00Z", core.cron_format(core.cron_prev("0 * * * *", epoch("2026-11-26T10:00:00Z"))))
    assert.are.equal("2024-02-29T00:00:00Z", core.cron_format(core.cron_prev("0 0 29 2 *", epoch("2027-01-01T00:00:00Z"))))
    assert.are.equal("2026-03-08T03:00:00-04:00", core.cron_format(
      core.cron_prev("30 2 * * *", epoch("2026-03-08T12:00:00Z"), "America/New_York"), "America/New_York"))
  end)

  it("lists the values of each field", function()
    local p = core.cron_parse("*/20 9-11 1,15 jan-mar mon,wed,7")
    assert.are.same({ 0, 20, 40 }, p.minute)
    assert.are.same({ 9, 10, 11 }, p.hour)
    assert.are.same({ 1, 15 }, p.dom)
    assert.are.same({ 1, 2, 3 }, p.month)
    assert.are.same({ 0, 1, 3 }, p.dow)
    assert.is_nil(p.seconds)
    assert.are.equal(45, core.cron_parse(" 45 seconds ").seconds)
    assert.are.equal(epoch("2026-11-26T10:07:15Z"), core.cron_prev("15 seconds", epoch("2026-11-26T10:07:29Z")))
  end)
end)

describe("cron errors", function()
  local cases = {
    { "* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4" },
    { "* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6" },
    { "", "expected 5 fields (minute hour day-of-month month day-of-week), got 0" },
    { "60 * * * *", "minute: 60 is out of range 0-59" },
    { "* 24 * * *", "hour: 24 is out of range 0-23" },
    { "* * 0 * *", "day of month: 0 is out of range 1-31" },
    { "* * * 13 *", "month: 13 is out of range 1-12" },
    { "* * * * 8", "day of week: 8 is out of range 0-7" },
    { "* * * foo *", "month: unknown name 'foo' (use jan-dec)" },
    { "* * * * monday", "day of week: unknown name 'monday' (use sun-sat)" },
    { "a * * * *", "minute: unexpected 'a'" },
    { "5-1 * * * *", "minute: range 5-1 goes backwards" },
    { "*/0 * * * *", "minute: step 0 is out of range 1-59" },
    { "*/x * * * *", "minute: a step must be a number" },
    { "1,,2 * * * *", "minute: empty list item" },
    { "1- * * * *", "minute: a value is missing" },
    { "0 0 30 2 *", "day of month: never occurs in the given months" },
    { "0 0 31 apr,jun *", "day of month: never occurs in the given months" },
    { "@every5m", "unknown macro (use @yearly, @monthly, @weekly, @daily or @hourly)" },
    { "0 seconds", "seconds: 0 is out of range 1-59" },
    { "60 seconds", "seconds: 60 is out of range 1-59" },
    { "120 seconds", "seconds: 120 is out of range 1-59" },
    { "30 minutes", "expected 5 fields (minute hour day-of-month month day-of-week), got 2" },
  }
  for _, c in ipairs(cases) do
    it(("rejects %q"):format(c[1]), function()
      local ok, err = core.cron_parse(c[1])
      assert.is_nil(ok)
      assert.are.equal(('invalid cron expression "%s": %s'):format(c[1], c[2]), err)
    end)
  end

  it("rejects a NUL byte and an unknown zone", function()
    local ok, err = core.cron_parse("* * * * *\0")
    assert.is_nil(ok)
    assert.matches("contains a NUL byte$", err)
    ok, err = core.cron_next("* * * * *", 0, "Mars/Olympus")
    assert.is_nil(ok)
    assert.are.equal('unknown time zone "Mars/Olympus"', err)
    assert.is_false(core.cron_zone_ok("../../etc/passwd"))
    assert.is_true(core.cron_zone_ok("America/New_York"))
  end)
end)
