-- The demo: seeding is deterministic (the same checksum in two databases),
-- and the demo script at a tiny scale creates, refreshes and validates the
-- four views (one audit refusing a broken load, then passing), then reuses
-- everything on a second run.
local H = require "spec.helper"
local mv = require "matviews"

local seed = dofile("demo/seed.lua")

describe("demo seeding", function()
  it("gives the same rows at the same scale, and other rows at another", function()
    H.fresh_db("demo_seed_a")
    local r = seed.seed({ users = 40 })
    assert.is_true(r.seeded)
    local a = seed.checksum()
    assert.are.same({ users = 40, accounts = 80, events = 358, sessions = 140 }, seed.counts())
    assert.is_false(seed.seed({ users = 40 }).seeded)
    assert.are.equal(a, seed.checksum())
    H.fresh_db("demo_seed_b")
    seed.seed({ users = 40 })
    assert.are.equal(a, seed.checksum())
    seed.seed({ users = 41 })
    assert.are.equal(41, seed.scale())
    assert.are_not.equal(a, seed.checksum())
  end)

  it("refuses to replace a users table it did not make", function()
    H.fresh_db("demo_seed_c")
    mv.exec("CREATE TABLE users (id int)")
    local ok, err = pcall(seed.seed, { users = 10 })
    assert.is_false(ok)
    assert.are.equal("table users exists and was not made by the demo; use another database (--dsn) for the demo",
      err.message)
  end)
end)

describe("demo script", function()
  setup(function() H.fresh_db() end)

  it("builds the four views at a tiny scale and they validate as match", function()
    local r = H.mv("run demo/demo.lua --users 300")
    assert.are.equal(0, r.code, r.err)
    assert.matches("seed%s+300 users, %d+ accounts", r.out)
    for _, name in ipairs({ "mv_users", "mv_user_accounts", "mv_user_accounts_events", "mv_user_activity" }) do
      assert.matches("create%s+" .. name .. "%s", r.out)
      assert.matches("public%." .. name .. "%s+5%s+.-%s300%s+300%s+match\n", r.out)
    end
    for _, s in ipairs({ "regular", "concurrent" }) do
      assert.matches("refresh%s+mv_[%w_]+ %(" .. s .. ", 300 rows%)", r.out)
    end
    -- the swap view is audited: passed on its refresh, refused on a broken load before it
    assert.matches("refresh%s+mv_user_accounts_events %(swap, 300 rows; audit passed: min_rows, not_null, unique, sql%)", r.out)
    assert.matches("audit%s+mv_user_accounts_events: a %-10,000,000%.00 refund lands in events; the refresh is refused%s+%d+ ms\n"
      .. "%s+audit failed: audit sql 1 is false: select count%(%*%) = 0 from {new} where revenue_cents < 0; the old contents stay\n"
      .. "%s+mv_user_accounts_events still has its 300 rows; the refund is removed again\n", r.out)
    local runs = mv.query([[SELECT r.status, r.error FROM mat_view_refresh_runs r JOIN mat_view_definitions d
      ON d.id = r.mat_view_definition_id WHERE d.name = 'mv_user_accounts_events' ORDER BY r.id]])
    assert.are.same({ 3, 2 }, { runs[1].status, runs[2].status })
    assert.are.equal(0, mv.query("SELECT count(*) AS n FROM events WHERE id < 0")[1].n)
    local u = mv.query("SELECT count(*) AS n FROM pg_indexes WHERE indexname IN (SELECT indexname FROM pg_indexes "
      .. "WHERE tablename LIKE 'mv_%' AND indexdef LIKE 'CREATE UNIQUE INDEX%')")[1]
    assert.are.equal(4, u.n)
    -- it ends by writing the report and printing its path
    local page = r.out:match("\nreport: (/[^\n]+/report%.html)\n")
    assert.is_truthy(page, r.out)
    assert.matches("<td data%-sort=\"mv_user_activity\"><a href=", H.slurp(page))
  end)

  it("reuses the data and the views on a second run", function()
    local before = seed.checksum()
    -- the variant of definitions/ is written in a private scratch directory
    -- under TMPDIR, removed after
    local tmpdir = H.tmpfile("_tmpdir")
    assert(os.execute("mkdir " .. H.q(tmpdir)))
    local r = H.mv("run demo/demo.lua", { env = { DEMO_USERS = "300", TMPDIR = tmpdir } })
    assert.are.equal(0, r.code, r.err)
    assert.are.same({}, mv.core.sys.listdir(tmpdir))
    assert.matches("300 users, .- %(reused%)", r.out)
    assert.matches("replace%s+mv_user_accounts: SQL changed, columns added: first_account_at", r.out)
    assert.are.equal(1, #mv.query([[SELECT 1 FROM pg_attribute WHERE attrelid = 'mv_user_accounts'::regclass
      AND attname = 'first_account_at']]))
    assert.are.equal(before, seed.checksum())
    assert.are.equal(0, H.mv("validate --iterations 1").code)
  end)
end)
