-- The definition DSL: definitions/*.lua loaded in a sandbox, normalised to
-- catalog fields; every error kind reported as file:line with the key, and
-- nothing returned when any file has an error.
local dsl = require "matviews.dsl"
local config = require "matviews.config"
local H = require "spec.helper"

local DIR = "spec/fixtures/defs/"

-- The errors of loading one fixture directory (asserting the load failed).
local function errors_of(name)
  local defs, errs = dsl.load_dir(DIR .. name)
  assert.is_nil(defs)
  return errs
end

describe("definition files", function()
  it("load in file-name order with every key normalised", function()
    local defs = assert(dsl.load_dir(DIR .. "good"))
    local names = {}
    for i, d in ipairs(defs) do names[i] = d.name .. "@" .. d.file .. ":" .. d.line end
    assert.are.same({
      "mv_user_activity@spec/fixtures/defs/good/activity.lua:2",
      "mv_totals@spec/fixtures/defs/good/activity.lua:19",
      "users_base@spec/fixtures/defs/good/base.lua:1",
    }, names)
    assert.are.same({
      name = "mv_user_activity",
      sql = "SELECT u.id AS user_id, count(e.id) AS events\n           FROM users u LEFT JOIN events e ON e.user_id = u.id GROUP BY u.id",
      refresh_strategy = "concurrent",
      unique_index_columns = { "user_id" },
      dependencies = { "users_base" },
      schedule_cron = "*/15 * * * *",
      indexes = {
        { name = "mv_user_activity_events_idx", columns = { "events" }, unique = false },
        { name = "mv_user_activity_user_id_events_key", columns = { "user_id", "events" }, unique = true },
      },
      grants = { { role = "app", privileges = { "REFERENCES", "SELECT" } },
                 { role = "reporting", privileges = { "SELECT" } } },
      comment = "Events per user",
      retention = { keep_last = 500, keep_days = 90 },
      options = { row_count = "exact" },
    }, dsl.to_catalog(defs[1]))
    assert.are.same({ name = "mv_totals", sql = "SELECT c1, c2 FROM totals", refresh_strategy = "regular",
      unique_index_columns = {}, dependencies = {}, schedule_cron = "0 3 * JAN-MAR,OCT MON-FRI",
      indexes = {}, grants = {}, options = {} }, dsl.to_catalog(defs[2]))
    assert.is_function(defs[3].retention)
    assert.are.same({ custom = true }, dsl.to_catalog(defs[3]).retention)
  end)

  it("report a Lua syntax error with file and line", function()
    assert.are.same({ "spec/fixtures/defs/syntax/a.lua:4: '}' expected (to close '{' at line 1) near 'unique'" },
      errors_of("syntax"))
  end)

  it("report an unknown key at its line with the closest known key", function()
    assert.are.same({ "spec/fixtures/defs/unknown_key/a.lua:4: view 'mv_a': unknown key 'strateg' (did you mean 'strategy'?)" },
      errors_of("unknown_key"))
  end)

  it("report a wrong type at the key's line", function()
    assert.are.same({ "spec/fixtures/defs/wrong_type/a.lua:3: view 'mv_a': key 'unique' must be an array of column names, got number" },
      errors_of("wrong_type"))
  end)

  it("report a bad strategy", function()
    -- issue 16: a strategy may be declared in any file, so an undeclared name is unknown
    assert.are.same({ 'spec/fixtures/defs/bad_strategy/a.lua:1: view \'mv_a\': unknown strategy "fast" (declared: concurrent, regular, swap)' },
      errors_of("bad_strategy"))
  end)

  it("report an invalid cron expression", function()
    assert.are.same({ 'spec/fixtures/defs/bad_cron/a.lua:3: view \'mv_a\': key \'schedule\': "*/15 25 * * *": hour: 25 is out of range 0-23' },
      errors_of("bad_cron"))
  end)

  it("report the same name in two files, naming both places, and load nothing", function()
    assert.are.same({ "spec/fixtures/defs/duplicate/b.lua:3: view 'mv_a': already declared at spec/fixtures/defs/duplicate/a.lua:1" },
      errors_of("duplicate"))
  end)

  it("run without io, os, require or mv", function()
    assert.are.same({ "spec/fixtures/defs/sandbox/a.lua:3: attempt to index a nil value (global 'os')" }, errors_of("sandbox"))
    local dir = H.tmpfile("_dsl_defs")
    os.execute("mkdir -p " .. dir)
    H.write(dir .. "/a.lua", 'view "a" { sql = tostring(require or mv or io or "SELECT 1") }\nstring.upper = nil\n')
    local defs = assert(dsl.load_dir(dir))
    assert.are.equal("SELECT 1", defs[1].sql)
    assert.is_function(string.upper) -- the file changed its own copy only
  end)

  it("report a missing sql, a bad name, SQL or column the catalog refuses, a concurrent view without unique columns", function()
    local dir = H.tmpfile("_dsl_defs")
    os.execute("mkdir -p " .. dir)
    H.write(dir .. "/a.lua", 'view "a" { comment = "x" }\nview "b" { sql = "SELECT 1", strategy = "concurrent" }\n')
    H.write(dir .. "/ab.lua", '\nview "bad-name" { sql = "SELECT 1" }\n')
    H.write(dir .. "/b.lua", 'view "v" {\n  sql = "SELECT 1; DROP TABLE x" }\nview "w" { sql = "SELECT 1", unique = { "a b" } }\n')
    H.write(dir .. "/c.lua", 'view "c"\n')
    assert.are.same({
      dir .. "/a.lua:1: view 'a': key 'sql' is required",
      dir .. "/a.lua:2: view 'b': key 'strategy' is \"concurrent\", which needs unique columns (unique = { ... })",
      dir .. '/ab.lua:2: invalid name "bad-name": is not a simple identifier (letters, digits and underscores, not starting with a digit)',
      dir .. "/b.lua:2: view 'v': key 'sql': must be a single statement (found more after a semicolon)",
      dir .. "/b.lua:3: view 'w': key 'unique': \"a b\": is not a simple identifier (letters, digits and underscores, not starting with a digit)",
      dir .. '/c.lua:1: view \'c\': no body (view "c" { sql = ... })',
    }, select(2, dsl.load_dir(dir)))
  end)
end)

describe("cron expressions", function()
  -- The DSL checks a schedule with the scheduler's parser (src/cron.c).
  local function schedule_errors(expr)
    local dir = H.tmpfile("_dsl_defs")
    os.execute("mkdir -p " .. dir)
    H.write(dir .. "/a.lua", ('view "mv_a" {\n  sql = "SELECT 1",\n  schedule = %q,\n}\n'):format(expr))
    return select(2, dsl.load_dir(dir)), dir
  end

  it("accept fields with ranges, steps, lists and names", function()
    for _, e in ipairs({ "* * * * *", "*/5 0-23/2 1,15,31 JAN-DEC sun-sat", "0 0 * * 7", "@daily", "5/10 * * * *" }) do
      assert.is_nil(schedule_errors(e), e)
    end
  end)

  it("reject what the scheduler would reject, at the key's line, saying why", function()
    for expr, why in pairs({
      ["* * * *"] = "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
      ["*/0 * * * *"] = "minute: step 0 is out of range 1-59",
      ["* * * FOO *"] = "month: unknown name 'FOO' (use jan-dec)",
      ["0 0 30 2 *"] = "day of month: never occurs in the given months",
    }) do
      local errs, dir = schedule_errors(expr)
      assert.are.same({ ("%s/a.lua:3: view 'mv_a': key 'schedule': %q: %s"):format(dir, expr, why) }, errs)
    end
  end)
end)

describe("index names", function()
  it("are derived from view and columns, at most 63 bytes", function()
    assert.are.equal("mv_a_x_y_idx", dsl.index_name("mv_a", { "x", "y" }))
    local long = dsl.index_name(("v"):rep(40), { ("c"):rep(30) }, true)
    assert.are.equal(63, #long)
    assert.are.equal(long, dsl.index_name(("v"):rep(40), { ("c"):rep(30) }, true))
    assert.are_not.equal(long, dsl.index_name(("v"):rep(40), { ("c"):rep(31) }, true))
  end)
end)

describe("the configuration file", function()
  after_each(function() config.reset() end)

  it("loads keys, words and defaults", function()
    local f = H.write(H.tmpfile(".lua"), 'job_adapter = "queue"\nretention = { keep_last = 10 }\nworkflow "n" (function() end)\ndsn = "dbname=x"\n')
    local cfg = config.load(f)
    assert.are.equal("queue", cfg.job_adapter)
    assert.are.equal("dbname=x", cfg.dsn)
    assert.are.same({ keep_last = 10 }, cfg.retention)
    assert.is_function(cfg.workflows.n)
    assert.are.equal(5000, cfg.lock_timeout_ms)
  end)

  it("reports unknown keys and wrong types as file:line with the key", function()
    local f = H.write(H.tmpfile(".lua"), 'job_adaptor = "queue"\n\nlock_timeout_ms = "5s"\nretention = { keep_lst = 3 }\n')
    local ok, err = pcall(config.load, f)
    assert.is_false(ok)
    assert.are.equal(table.concat({
      f .. ":1: unknown key 'job_adaptor' (did you mean 'job_adapter'?)",
      f .. ':3: key \'lock_timeout_ms\' must be a non-negative integer, got "5s"',
      f .. ":4: key 'retention' must be a policy { keep_last = N, keep_days = D, keep_failures = bool } or a function (unknown key 'keep_lst', did you mean 'keep_last'?), got table",
    }, "\n"), err.message)
  end)

  it("reports a syntax error with its line", function()
    local f = H.write(H.tmpfile(".lua"), 'job_adapter = "queue"\nlock_timeout_ms = = 3\n')
    local ok, err = pcall(config.load, f)
    assert.is_false(ok)
    assert.are.equal(f .. ":2: unexpected symbol near '='", err.message)
  end)

  it("names the definitions directory: --definitions, else relative to the config file", function()
    local f = H.write(H.tmpfile(".lua"), 'definitions = "views"\n')
    config.load(f)
    local mv = require "matviews"
    local saved = mv.options.config
    mv.options.config = f
    assert.are.equal(f:match("^(.*)/") .. "/views", config.definitions_dir())
    assert.are.equal("elsewhere", config.definitions_dir("elsewhere"))
    mv.options.config = saved
  end)
end)
