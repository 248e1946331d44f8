-- `matviews migrate`: scripted migrations in migrations/NNN_name.lua, run
-- up and down in transactions, recorded with a sha256 of the file in
-- matviews_migrations; a failing one leaves nothing of itself; status
-- reports files changed or gone after they were applied.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local MIGRATIONS = {
  ["001_users"] = [[
return {
  up = function(conn) conn:exec("CREATE TABLE users (id int PRIMARY KEY)") end,
  down = function(conn) conn:exec("DROP TABLE users") end,
}
]],
  ["002_seed"] = [[
return {
  up = function(conn, mv)
    mv.exec("INSERT INTO users VALUES (1), (2)")
    conn:exec("CREATE TABLE notes (id int)")
  end,
  down = function(conn) conn:exec("DROP TABLE notes"); conn:exec("DELETE FROM users") end,
}
]],
}

-- A project directory with matviews.lua and the given migrations.
local function project(files, config)
  local dir = H.tmpfile("_proj")
  assert(os.execute("mkdir -p " .. H.q(dir .. "/db/migrations")))
  H.write(dir .. "/matviews.lua", config or 'migrations = "db/migrations"\n')
  for name, text in pairs(files) do H.write(dir .. "/db/migrations/" .. name .. ".lua", text) end
  return dir
end

-- Runs `matviews --config DIR/matviews.lua migrate ARGS`.
local function migrate(dir, args)
  return H.mv("--config " .. H.q(dir .. "/matviews.lua") .. " migrate " .. (args or ""))
end

local function exists(rel)
  return mv.query("SELECT to_regclass($1) IS NOT NULL AS ok", rel)[1].ok
end

local function versions()
  local out = {}
  for _, r in ipairs(mv.query("SELECT version FROM matviews_migrations ORDER BY version")) do out[#out + 1] = r.version end
  return out
end

-- The status column of `migrate status --json`, by id.
local function statuses(dir)
  local r = migrate(dir, "status --json")
  assert.are.equal(0, r.code)
  local out = {}
  for _, m in ipairs(cjson.decode(r.out).migrations) do out[m.id] = m.status end
  return out
end

describe("matviews migrate", function()
  before_each(function() H.fresh_db() end)

  it("lists pending migrations, applies them all, then has nothing to do", function()
    local dir = project(MIGRATIONS)
    local r = migrate(dir, "status")
    assert.are.equal(0, r.code)
    assert.are.equal(table.concat({
      "version  name   status   applied_at",
      "-------  -----  -------  ----------",
      "      1  users  pending",
      "      2  seed   pending",
    }, "\n") .. "\n", r.out)
    assert.is_false(exists("matviews_migrations")) -- status changes nothing
    r = migrate(dir)
    assert.are.equal(0, r.code)
    assert.matches("^applied 001_users %(%d+ ms%)\napplied 002_seed %(%d+ ms%)\n$", r.out)
    assert.is_true(exists("users") and exists("notes"))
    assert.are.equal(2, mv.query("SELECT count(*) AS n FROM users")[1].n)
    assert.are.same({ 1, 2 }, versions())
    r = migrate(dir, "up")
    assert.are.equal("nothing to migrate\n", r.out)
    assert.are.same({ ["001_users"] = "applied", ["002_seed"] = "applied" }, statuses(dir))
  end)

  it("records the sha256 of each file as applied", function()
    local dir = project(MIGRATIONS)
    assert.are.equal(0, migrate(dir).code)
    local sum = H.sh("sha256sum " .. H.q(dir .. "/db/migrations/001_users.lua")).out:match("^%x+")
    local row = mv.query("SELECT name, checksum FROM matviews_migrations WHERE version = 1")[1]
    assert.are.same({ name = "users", checksum = sum }, row)
    local doc = cjson.decode(migrate(dir, "status --json").out)
    assert.are.equal(sum, doc.migrations[1].checksum)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%+00:00$", doc.migrations[1].applied_at)
    assert.are.equal(dir .. "/db/migrations", doc.directory)
  end)

  it("applies N with up N and reverts with down [N], newest first", function()
    local dir = project(MIGRATIONS)
    assert.matches("^applied 001_users ", migrate(dir, "up 1").out)
    assert.are.same({ 1 }, versions())
    assert.are.equal(0, migrate(dir).code)
    local r = migrate(dir, "down")
    assert.are.equal(0, r.code)
    assert.matches("^reverted 002_seed %(%d+ ms%)\n$", r.out)
    assert.is_false(exists("notes"))
    assert.are.same({ 1 }, versions())
    assert.are.equal(0, migrate(dir, "up").code)
    r = migrate(dir, "down 2")
    assert.matches("^reverted 002_seed %(%d+ ms%)\nreverted 001_users %(%d+ ms%)\n$", r.out)
    assert.is_false(exists("users"))
    assert.are.same({}, versions())
    assert.are.equal("nothing to revert\n", migrate(dir, "down").out)
  end)

  it("leaves nothing of a failing migration, stops the run and exits 1 naming it", function()
    local files = {
      ["001_users"] = MIGRATIONS["001_users"],
      ["002_bad"] = 'return { up = function(conn)\n  conn:exec("CREATE TABLE half (id int)")\n  error("boom")\nend }\n',
      ["003_later"] = 'return { up = function(conn) conn:exec("CREATE TABLE later (id int)") end }\n',
    }
    local dir = project(files)
    local r = migrate(dir)
    assert.are.equal(1, r.code)
    assert.matches("^applied 001_users ", r.out)
    assert.are.equal("matviews: migration 002_bad failed: db/migrations/002_bad.lua:3: boom\n", r.err)
    assert.is_false(exists("half"))
    assert.is_false(exists("later"))
    assert.are.same({ 1 }, versions())
    assert.are.same({ ["001_users"] = "applied", ["002_bad"] = "pending", ["003_later"] = "pending" }, statuses(dir))
  end)

  it("reports a database error of a migration with its SQLSTATE", function()
    local dir = project({ ["001_oops"] = 'return { up = function(conn) conn:exec("SELECT * FROM nowhere") end }\n' })
    local r = migrate(dir)
    assert.are.equal(1, r.code)
    assert.are.equal('matviews: migration 001_oops failed: relation "nowhere" does not exist (SQLSTATE 42P01)\n', r.err)
    assert.are.same({}, versions())
  end)

  it("reports a file changed after it was applied, and one that is gone", function()
    local dir = project(MIGRATIONS)
    assert.are.equal(0, migrate(dir).code)
    local f = dir .. "/db/migrations/001_users.lua"
    H.write(f, H.slurp(f) .. "-- edited\n")
    local r = migrate(dir, "status")
    assert.matches("\n      1  users  changed  %d", r.out)
    assert.matches("\n      2  seed   applied  %d", r.out)
    assert.are.equal("warning: migration 001_users changed since it was applied\n", migrate(dir, "up").err)
    os.remove(dir .. "/db/migrations/002_seed.lua")
    assert.are.same({ ["001_users"] = "changed", ["002_seed"] = "missing" }, statuses(dir))
    r = migrate(dir, "down")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: migration 002_seed failed: its file db/migrations/002_seed.lua is gone\n", r.err)
    assert.are.same({ 1, 2 }, versions())
  end)

  it("refuses a bad count (exit 2), a misnamed file and a migration without up (exit 1)", function()
    local dir = project(MIGRATIONS)
    local r = migrate(dir, "up zero")
    assert.are.equal(2, r.code)
    assert.are.equal("migrate up: 'zero' is not a count (a positive integer after up or down)", H.usage_message(r.err))
    assert.are.equal(2, migrate(dir, "status 3").code)
    H.write(dir .. "/db/migrations/9_no.lua", "return {}\n")
    r = migrate(dir, "up")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: migration 9_no failed: db/migrations/9_no.lua: a migration returns "
      .. "{ up = function(conn, mv), down = function(conn, mv) }\n", r.err)
    os.remove(dir .. "/db/migrations/9_no.lua")
    H.write(dir .. "/db/migrations/bad-name.lua", "return {}\n")
    r = migrate(dir, "status")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: db/migrations/bad-name.lua: a migration file is named NNN_name.lua\n", r.err)
  end)

  it("uses migrations/ under the project by default and says when there are none", function()
    local dir = project({}, "")
    local r = migrate(dir, "status")
    assert.are.equal(0, r.code)
    assert.are.equal("no migrations in migrations/\n", r.out)
    local out = migrate(dir, "status --json").out
    assert.truthy(out:find('"migrations":[]', 1, true))
    assert.are.equal(dir .. "/migrations", cjson.decode(out).directory)
  end)
end)
