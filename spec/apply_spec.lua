-- `matviews apply`: files into mat_view_definitions in one transaction,
-- inserted / updated (which keys) / unchanged, idempotent; --prune after the
-- prompt; declared indexes and grants brought onto live views.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local defs_dir = H.defs_dir

local function role(name)
  if #mv.query("SELECT 1 FROM pg_roles WHERE rolname = $1", name) == 0 then
    mv.exec("CREATE ROLE " .. mv.conn():quote_ident(name))
  end
end

describe("matviews apply", function()
  setup(function() H.fresh_db() end)

  it("inserts every definition, then reports all unchanged", function()
    local r = H.mv("apply --catalog-only --definitions spec/fixtures/defs/good")
    assert.are.equal("", r.err)
    assert.are.equal(0, r.code)
    assert.are.equal([[
inserted   mv_totals
inserted   mv_user_activity
inserted   users_base
3 inserted, 0 updated, 0 unchanged, 0 deleted
]], r.out)
    local rows = mv.query([[SELECT name, refresh_strategy, unique_index_columns::text AS u, schedule_cron,
      retention::text AS r, options::text AS o FROM mat_view_definitions ORDER BY name]])
    assert.are.same({
      { name = "mv_totals", refresh_strategy = 0, u = "[]", schedule_cron = "0 3 * JAN-MAR,OCT MON-FRI", r = mv.null, o = "{}" },
      { name = "mv_user_activity", refresh_strategy = 1, u = '["user_id"]', schedule_cron = "*/15 * * * *",
        r = '{"keep_days": 90, "keep_last": 500}', o = '{"row_count": "exact"}' },
      { name = "users_base", refresh_strategy = 2, u = "[]", schedule_cron = "@hourly", r = '{"custom": true}', o = "{}" },
    }, rows)
    r = H.mv("apply --catalog-only --json --definitions spec/fixtures/defs/good")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.same({ inserted = 0, updated = 0, unchanged = 3, deleted = 0 }, doc.counts)
    for _, v in ipairs(doc.views) do assert.are.equal("unchanged", v.action) end
  end)

  it("updates only what changed and names the keys", function()
    H.fresh_db()
    local dir = defs_dir({ ["a.lua"] = 'view "mv_a" { sql = "SELECT 1 AS x", schedule = "0 * * * *" }\nview "mv_b" { sql = "SELECT 2 AS y" }\n' })
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. dir).code)
    local before = mv.query("SELECT updated_at::text AS t FROM mat_view_definitions WHERE name = 'mv_b'")[1].t
    H.write(dir .. "/a.lua", 'view "mv_a" { sql = "SELECT 2 AS x", schedule = "5 * * * *", row_count = "none" }\nview "mv_b" { sql = "SELECT 2 AS y" }\n')
    local r = H.mv("apply --catalog-only --definitions " .. dir)
    assert.are.equal("updated    mv_a (sql, schedule, row_count)\nunchanged  mv_b\n0 inserted, 1 updated, 1 unchanged, 0 deleted\n", r.out)
    assert.are.equal(before, mv.query("SELECT updated_at::text AS t FROM mat_view_definitions WHERE name = 'mv_b'")[1].t)
    assert.are.same({ { sql = "SELECT 2 AS x", o = '{"row_count": "none"}' } },
      mv.query("SELECT sql, options::text AS o FROM mat_view_definitions WHERE name = 'mv_a'"))
    assert.matches("0 inserted, 0 updated, 2 unchanged", H.mv("apply --catalog-only --definitions " .. dir).out)
  end)

  it("applies nothing when any file has an error", function()
    H.fresh_db()
    local dir = defs_dir({ ["a.lua"] = 'view "mv_ok" { sql = "SELECT 1" }\n', ["b.lua"] = 'view "mv_bad" { sql = "SELECT 1", strateg = "swap" }\n' })
    local r = H.mv("apply --catalog-only --definitions " .. dir)
    assert.are.equal(2, r.code)
    assert.are.equal(dir .. "/b.lua:1: view 'mv_bad': unknown key 'strateg' (did you mean 'strategy'?)\n"
      .. "1 error in definitions; nothing applied\n", r.err)
    r = H.mv("apply --catalog-only --json --definitions " .. dir)
    assert.are.equal(2, r.code)
    assert.are.same({ ok = false, errors = { dir .. "/b.lua:1: view 'mv_bad': unknown key 'strateg' (did you mean 'strategy'?)" } },
      cjson.decode(r.out))
    assert.are.same({ { t = mv.null } }, mv.query("SELECT to_regclass('mat_view_definitions') AS t"))
  end)

  it("--prune deletes definitions whose files are gone, after the prompt", function()
    H.fresh_db()
    local dir = defs_dir({ ["a.lua"] = 'view "mv_a" { sql = "SELECT 1" }\n', ["b.lua"] = 'view "mv_b" { sql = "SELECT 1" }\n' })
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. dir).code)
    os.remove(dir .. "/b.lua")
    H.write(dir .. "/a.lua", 'view "mv_a" { sql = "SELECT 2" }\n')
    local r = H.tty("apply --catalog-only --prune --definitions " .. dir, { stdin = "n\n" })
    assert.are.equal(3, r.code)
    assert.are.equal("apply --prune deletes 1 definition whose files are gone: mv_b\n"
      .. "(the views themselves are not dropped)\nProceed? [y/N] aborted; nothing applied\n", r.err)
    assert.are.same({ { name = "mv_a", sql = "SELECT 1" }, { name = "mv_b", sql = "SELECT 1" } },
      mv.query("SELECT name, sql FROM mat_view_definitions ORDER BY name"))
    r = H.mv("apply --catalog-only --definitions " .. dir)
    assert.are.equal("updated    mv_a (sql)\n0 inserted, 1 updated, 0 unchanged, 0 deleted\n", r.out)
    assert.are.equal(2, #mv.query("SELECT name FROM mat_view_definitions"))
    r = H.tty("apply --catalog-only --prune --definitions " .. dir, { stdin = "y\n" })
    assert.are.equal(0, r.code)
    assert.are.equal("unchanged  mv_a\ndeleted    mv_b\n0 inserted, 0 updated, 1 unchanged, 1 deleted\n", r.out)
    assert.are.same({ { name = "mv_a" } }, mv.query("SELECT name FROM mat_view_definitions WHERE deleted_at IS NULL"))
  end)

  it("creates declared indexes and brings grants to the declaration on a live view", function()
    H.fresh_db()
    role("mv_spec_reader"); role("mv_spec_app")
    mv.exec("CREATE MATERIALIZED VIEW mv_live AS SELECT g AS id, g % 7 AS bucket FROM generate_series(1, 10) g")
    mv.exec("GRANT SELECT ON mv_live TO mv_spec_app")
    local dir = defs_dir({ ["live.lua"] = [[
view "mv_live" {
  sql = "SELECT g AS id, g % 7 AS bucket FROM generate_series(1, 10) g",
  strategy = "concurrent", unique = { "id" },
  indexes = { { "bucket" } },
  grants = { "mv_spec_reader" },
}
]] })
    local r = H.mv("apply --catalog-only --definitions " .. dir)
    assert.are.equal("", r.err)
    assert.are.equal([[
inserted   mv_live
           CREATE UNIQUE INDEX "mv_live_id_key" ON "public"."mv_live" USING btree ("id")
           CREATE INDEX "mv_live_bucket_idx" ON "public"."mv_live" USING btree ("bucket")
           GRANT SELECT ON "public"."mv_live" TO "mv_spec_reader"
           REVOKE SELECT ON "public"."mv_live" FROM "mv_spec_app"
1 inserted, 0 updated, 0 unchanged, 0 deleted
]], r.out)
    assert.are.same({ { indexname = "mv_live_bucket_idx" }, { indexname = "mv_live_id_key" } },
      mv.query("SELECT indexname FROM pg_indexes WHERE tablename = 'mv_live' ORDER BY 1"))
    assert.are.same({ { g = "mv_spec_reader" } }, mv.query([[SELECT pg_get_userbyid(a.grantee) AS g
      FROM pg_class c, aclexplode(c.relacl) a WHERE c.relname = 'mv_live' AND a.grantee <> c.relowner]]))
    assert.are.equal("unchanged  mv_live\n0 inserted, 0 updated, 1 unchanged, 0 deleted\n", H.mv("apply --catalog-only --definitions " .. dir).out)
  end)

  it("rolls everything back when a live change fails", function()
    H.fresh_db()
    mv.exec("CREATE MATERIALIZED VIEW mv_g AS SELECT 1 AS id")
    local dir = defs_dir({ ["a.lua"] = 'view "mv_a" { sql = "SELECT 1" }\nview "mv_g" { sql = "SELECT 1 AS id", grants = { "mv_spec_nobody" } }\n' })
    local r = H.mv("apply --catalog-only --definitions " .. dir)
    assert.are.equal(1, r.code)
    assert.are.equal('matviews: view mv_g: GRANT SELECT ON "public"."mv_g" TO "mv_spec_nobody": role "mv_spec_nobody" does not exist (SQLSTATE 42704)\n', r.err)
    assert.are.same({}, mv.query("SELECT name FROM mat_view_definitions"))
  end)
end)

describe("matviews apply on a view without a grants key", function()
  setup(function() H.fresh_db() end)

  it("leaves grants made by hand in place, and plan sees no drift for them", function()
    role("mv_hand_reader")
    local dir = defs_dir({ ["a.lua"] = 'view "mv_nogrant" { sql = "SELECT 1 AS x" }\n' })
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. dir).code)
    mv.exec("CREATE MATERIALIZED VIEW mv_nogrant AS SELECT 1 AS x")
    mv.exec("GRANT SELECT ON mv_nogrant TO mv_hand_reader")
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. dir).code)
    assert.is_true(mv.query("SELECT has_table_privilege('mv_hand_reader', 'mv_nogrant', 'SELECT') AS ok")[1].ok)
    local r = H.mv("plan --definitions " .. dir)
    assert.are.equal(0, r.code)
  end)
end)
