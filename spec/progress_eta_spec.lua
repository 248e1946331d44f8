-- The live progress line on a terminal: while a view's job runs, the line
-- "[done/total] verb view  Ns elapsed, ETA Ms" is redrawn every second,
-- the ETA counting down from the view's recorded median duration.
local H = require "spec.helper"
local mv = require "matviews"

describe("the progress line", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "p_slow", sql = "SELECT 1 AS x FROM pg_sleep(2.5)" })
    assert.are.equal("success", mv.create("p_slow").status)
    local id = mv.definitions.get("p_slow").id
    for _, ms in ipairs({ 9000, 10000, 11000 }) do -- a recorded median of 10 s
      mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms)
        VALUES ($1, 2, now(), now(), $2)]], id, ms)
    end
  end)

  it("ticks every second on a terminal with an ETA from the median duration", function()
    local r = H.sh("script -qec " .. H.q("exec " .. H.bin .. " refresh p_slow --yes") .. " /dev/null")
    assert.are.equal(0, r.code, r.out)
    local ticks = {}
    for el, eta in r.out:gmatch("\r\27%[K%[0/1%] refreshing p_slow  ([%d%.]+s) elapsed, ETA ([%d%.]+s)") do
      ticks[#ticks + 1] = { el, eta }
    end
    -- drawn at the start, then once a second while the 2.5 s refresh runs
    assert.is_true(#ticks >= 2, r.out)
    for _, t in ipairs(ticks) do
      local el, eta = tonumber(t[1]:sub(1, -2)), tonumber(t[2]:sub(1, -2))
      assert.is_true(el >= 1 and el + eta >= 9.8 and el + eta <= 10.2, t[1] .. " + " .. t[2])
    end
    assert.truthy(r.out:find("\r\27[K[0/1] refreshing p_slow  ", 1, true))
    assert.matches("%[1/1%] refresh p_slow: success in %d+ ms", r.out)
  end)

  it("stays off a pipe", function()
    local r = H.mv("refresh p_slow --yes")
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
    assert.is_nil(r.out:find("ETA", 1, true))
  end)
end)
