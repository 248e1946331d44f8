-- Bounded user code and checked results: definition files, retention
-- functions, the configuration file and its hooks run under an instruction
-- budget (user_code_budget; the configuration file under the default); a custom
-- retention policy's result is validated before anything is deleted;
-- definition options are checked for type and range; jobs leave the
-- server's statement_timeout alone unless told one; `runs --since` with a
-- duration beyond the calendar is a usage error.
local H = require "spec.helper"
local mv = require "matviews"

-- A project directory with a configuration (cfg text) and definition files
-- (name -> text); returns the directory.
local function project(cfg, files)
  local dir = H.tmpfile(".proj")
  os.execute("mkdir -p " .. H.q(dir .. "/definitions"))
  H.write(dir .. "/matviews.lua", cfg)
  for name, text in pairs(files) do H.write(dir .. "/definitions/" .. name, text) end
  return dir
end

-- Runs the CLI in dir (with --config, as the working directory is the spec's).
local function cli(dir, args)
  return H.mv("--config " .. H.q(dir .. "/matviews.lua") .. " " .. args)
end

describe("the instruction budget of user code", function()
  setup(function() H.fresh_db(); mv.init() end)

  it("stops a definition file that never ends, naming file and line", function()
    local dir = project("user_code_budget = 100000\n",
      { ["a.lua"] = 'view "bx" { sql = "SELECT 1" }\nwhile true do end\n' })
    local r = cli(dir, "apply --yes")
    assert.are.equal(2, r.code, r.out) -- an invalid definition file: exit 2, nothing applied
    assert.matches("definitions/a%.lua:2: definition file used up its budget of 100000 instructions "
      .. "%(user_code_budget in the configuration%)", r.err)
  end)

  it("stops a retention function that never ends, naming the policy and line", function()
    local dir = project("user_code_budget = 100000\n",
      { ["a.lua"] = 'view "bx" {\n  sql = "SELECT 1",\n  retention = function(runs)\n    while true do end\n  end,\n}\n' })
    assert.are.equal(0, cli(dir, "apply --yes").code)
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, created_at)
      SELECT id, 2, now() FROM mat_view_definitions WHERE name = 'bx']])
    local r = cli(dir, "prune --yes")
    assert.are.equal(1, r.code, r.out)
    assert.matches("retention policy of bx %(mat_view_[a-z]+_runs%): [^\n]*definitions/a%.lua:4: "
      .. "retention policy of bx used up its budget of 100000 instructions", r.err)
    assert.are.equal(1, #mv.query("SELECT 1 FROM mat_view_refresh_runs"))
  end)

  it("stops a configuration file that never ends, naming file and line", function()
    local dir = project('job_adapter = "inline"\nwhile true do end\n', {})
    local r = cli(dir, "list")
    assert.are.equal(1, r.code, r.out)
    assert.are.equal(("matviews: %s/matviews.lua:2: configuration file used up its budget of 100000000 instructions "
      .. "(user_code_budget in the configuration)\n"):format(dir), r.err)
  end)

  it("stops a hook of the configuration file that never ends; the run keeps its status", function()
    local dir = project("user_code_budget = 100000\non_success(function(run)\n  while true do end\nend)\n",
      { ["a.lua"] = 'view "bh" { sql = "SELECT 1 AS x" }\n' })
    assert.are.equal(0, cli(dir, "apply --yes").code)
    local r = cli(dir, "refresh bh --yes")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^matviews: on_success hook failed for [%w_.]*bh %(run %d+%): [^\n]*/matviews%.lua:3: "
      .. "on_success hook used up its budget of 100000 instructions %(user_code_budget in the configuration%)\n$", r.err)
    assert.matches("refresh bh: success", r.out)
  end)

  it("refuses a budget that is not a count", function()
    local dir = project('user_code_budget = "lots"\n', {})
    local r = cli(dir, "plan")
    assert.are.equal(1, r.code)
    assert.matches("key 'user_code_budget' must be a non%-negative integer", r.err)
  end)
end)

describe("the result of a custom retention policy", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ('ra', 'SELECT 1'), ('rb', 'SELECT 1')")
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, created_at)
      SELECT d.id, 2, now() - g * interval '1 day' FROM mat_view_definitions d, generate_series(1, 3) g]])
  end)
  local function count() return #mv.query("SELECT 1 FROM mat_view_refresh_runs") end

  -- Each policy is refused, naming the view and table, and nothing goes.
  local BAD = {
    { "a set with 1 for true", function(runs) return runs[1] and { [runs[1].id] = 1 } or {} end, "an entry %[%d+%] = 1" },
    { "string ids", function(runs) local t = {} for i, r in ipairs(runs) do t[i] = tostring(r.id) end return t end,
      '"%d+", which is not the id of a run it was given' },
    { "an id of another view", function(runs, ctx) return runs[1] and { ctx.view == "ra" and 999999 or runs[1].id } or {} end,
      "999999, which is not the id of a run it was given" },
    { "a number", function() return 3 end, "a number" },
  }
  for _, case in ipairs(BAD) do
    it("refuses " .. case[1] .. " and deletes nothing", function()
      local ok, err = pcall(mv.prune, { policy = case[2] })
      assert.is_false(ok)
      assert.matches("^retention policy of r[ab] %(mat_view_%a+_runs%) returned " .. case[3], err.message)
      assert.are.equal(6, count())
    end)
  end

  it("shows an error table raised inside the policy", function()
    local ok, err = pcall(mv.prune, { policy = function() error({ code = 5 }) end })
    assert.is_false(ok)
    assert.are.equal('retention policy of ra (mat_view_create_runs): {"code":5}', err.message)
  end)

  it("accepts ids, run tables and a set of ids", function()
    local ok = pcall(mv.prune, { policy = function(runs, ctx)
      if ctx.view == "ra" and runs[1] then return { runs[1].id, runs[2] } end
      return runs[1] and { [runs[1].id] = true } or {}
    end })
    assert.is_true(ok)
    assert.are.equal(3, count())
  end)
end)

describe("definition options", function()
  setup(function() H.fresh_db(); mv.init() end)

  local BAD = {
    { { statement_timeout_ms = "abc" }, 'statement_timeout_ms must be a whole number of milliseconds from 0 to 2147483647, got "abc"' },
    { { statement_timeout_ms = 1.5 }, "statement_timeout_ms must be a whole number of milliseconds from 0 to 2147483647, got 1.5" },
    { { lock_timeout_ms = 2147483648 }, "lock_timeout_ms must be a whole number of milliseconds from 0 to 2147483647, got 2147483648" },
    { { lock_timeout_ms = -1 }, "lock_timeout_ms must be a whole number of milliseconds from 0 to 2147483647, got -1" },
    { { statement_timeout_ms = 0 / 0 }, "statement_timeout_ms must be a whole number of milliseconds from 0 to 2147483647, got " },
    { { x = { y = 0 / 0 } }, "x.y must be a finite number" },
    { { x = print }, "x must be JSON data, not a function" },
  }
  it("refuses a wrong type, a fraction, out of range, NaN, what is no JSON", function()
    for _, case in ipairs(BAD) do
      local ok, err = pcall(mv.definitions.save, { name = "opt_v", sql = "SELECT 1", options = case[1] })
      assert.is_false(ok)
      assert.are.equal("invalid options: ", err.message:sub(1, 17))
      assert.are.equal(case[2], err.message:sub(18, 17 + #case[2]))
    end
    assert.are.equal(0, #mv.query("SELECT 1 FROM mat_view_definitions"))
  end)

  it("keeps timeouts given as integral numbers, as integers", function()
    mv.definitions.save({ name = "opt_v", sql = "SELECT 1", options = { statement_timeout_ms = 2000.0, lock_timeout_ms = 0 } })
    local o = mv.json.decode(mv.query("SELECT options::text AS o FROM mat_view_definitions")[1].o)
    assert.are.same({ 2000, 0 }, { o.statement_timeout_ms, o.lock_timeout_ms })
  end)
end)

describe("the statement_timeout of jobs", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "st_slow", sql = "SELECT 1 AS x, pg_sleep(0.6)::text AS s" })
    mv.exec("CREATE MATERIALIZED VIEW st_slow AS SELECT 1 AS x, pg_sleep(0.6)::text AS s")
    mv.exec("ALTER DATABASE " .. H.dbname .. " SET statement_timeout = '200ms'")
  end)
  teardown(function() mv.exec("ALTER DATABASE " .. H.dbname .. " RESET statement_timeout") end)

  it("keeps the database's setting when neither definition nor configuration sets one", function()
    local r = H.mv("refresh st_slow --yes")
    assert.are.equal(1, r.code, r.out)
    assert.matches("canceling statement due to statement timeout", r.out .. r.err)
  end)

  it("uses the configuration's when it sets one", function()
    local cfg = H.write(H.tmpfile(".lua"), "statement_timeout_ms = 0\n")
    local r = H.mv("--config " .. H.q(cfg) .. " refresh st_slow --yes")
    assert.are.equal(0, r.code, r.out .. r.err)
  end)
end)

describe("runs --since beyond the calendar", function()
  setup(function() H.fresh_db(); mv.init() end)

  it("is a usage error", function()
    local r = H.mv("runs --since 99999999999999d")
    assert.are.equal(2, r.code, r.err)
    assert.are.equal('invalid duration "99999999999999d": at most 1000 years (use all for the whole history)',
      H.usage_message(r.err))
    assert.are.equal(0, H.mv("runs --since 52000w").code)
  end)
end)
