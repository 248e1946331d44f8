-- Swaps of views that read one another: sb reads sa, both swap. A swap of
-- sa must not meet sb's build relation (which reads sa) half-way: the
-- advisory locks of swap_guard.c order them. And a build relation an
-- earlier attempt left (its session gone) is dropped before building again.
local H = require "spec.helper"
local mv = require "matviews"

-- The exit codes and outputs of refreshing a and b at the same time.
local function both(a, b)
  local cmd = H.bin .. " refresh %s --yes >/dev/null 2>>%s; echo %s $? >>%s"
  local log, codes = H.tmpfile(".err"), H.tmpfile(".codes")
  H.sh(("(%s) & (%s) & wait"):format(cmd:format(a, log, a, codes), cmd:format(b, log, b, codes)))
  return H.slurp(codes), H.slurp(log)
end

describe("swap refreshes of an upstream and a downstream view at once", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE sd_base AS SELECT g AS id FROM generate_series(1, 1000) g")
    mv.definitions.save({ name = "sd_a", sql = "SELECT id FROM sd_base, pg_sleep(0.05)", refresh_strategy = "swap" })
    mv.definitions.save({ name = "sd_b", sql = "SELECT count(*) AS n, max(id) AS m FROM sd_a, pg_sleep(0.2)",
      refresh_strategy = "swap" })
    assert.are.equal(0, H.mv("create sd_a sd_b --yes").code)
  end)

  it("all 20 alternating refreshes succeed and the contents are right", function()
    for i = 1, 10 do
      mv.exec("INSERT INTO sd_base VALUES ($1)", 1000 + i)
      local codes, err = both(i % 2 == 0 and "sd_a" or "sd_b", i % 2 == 0 and "sd_b" or "sd_a")
      assert.are.equal(2, select(2, codes:gsub(" 0\n", "")), "round " .. i .. ": " .. codes .. err)
    end
    local runs = mv.query([[SELECT d.name, r.status, r.error FROM mat_view_refresh_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id ORDER BY r.id]])
    assert.are.equal(20, #runs)
    for _, r in ipairs(runs) do assert.are.equal(2, r.status, tostring(r.error)) end
    assert.are.equal(1010, #mv.query("SELECT id FROM sd_a"))
    -- sb's last refresh may have read sa before sa's last swap: refreshed again, it is exact
    assert.are.equal(0, H.mv("refresh sd_b --yes").code)
    assert.are.same({ n = 1010, m = 1010 }, mv.query("SELECT n, m FROM sd_b")[1])
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_%'"))
  end)

  it("queued refreshes of both run by two workers at once all succeed", function()
    for i = 1, 5 do
      mv.exec("INSERT INTO sd_base VALUES ($1)", 2000 + i)
      local order = i % 2 == 0 and "sd_a sd_b" or "sd_b sd_a"
      assert.are.equal(0, H.mv("enqueue refresh " .. order).code)
      local r = H.mv("worker --once --concurrency 2")
      assert.are.equal(0, r.code, r.out .. r.err)
      assert.are.equal(2, select(2, r.out:gsub("job %d+ refresh [%w_.]*sd_%a: success", "")), r.out)
    end
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_%'"))
  end)

  it("drops the build relation an earlier attempt left before building again", function()
    local dead = mv.query("SELECT coalesce(max(pid), 0) + 100000 AS pid FROM pg_stat_activity")[1].pid
    local left = ("mv_swap_sd_a_%d"):format(dead)
    mv.exec(("CREATE MATERIALIZED VIEW %s AS SELECT 1 AS id"):format(left))
    assert.are.equal(0, H.mv("refresh sd_a --yes").code)
    assert.are.same({}, mv.query("SELECT 1 FROM pg_class WHERE relname = $1", left))
  end)

  it("leaves no build relation after attempts that each gave up waiting for the swap's lock", function()
    local holder = mv.connect("dbname=" .. H.dbname)
    holder:exec("BEGIN")
    holder:query("SELECT count(*) FROM sd_a") -- holds a lock the swap must wait for
    local cfg = H.write(H.tmpfile(".lua"), "lock_timeout_ms = 200\nretry = { attempts = 3, base_ms = 10, max_ms = 20 }\n")
    local r = H.mv("--config " .. H.q(cfg) .. " refresh sd_a --yes")
    holder:exec("COMMIT")
    holder:close()
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("gave up waiting for a lock after 200 ms %(lock_timeout_ms%); the old view is untouched after 3 attempts", r.out)
    assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_%'"))
  end)
end)
