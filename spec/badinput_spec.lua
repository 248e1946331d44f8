-- Bad input: every command with missing, extra and invalid arguments (exit
-- 2, its usage and the error on stderr, nothing on stdout); definitions
-- whose SQL or name is refused, through mv.definitions.save, a definition
-- file + `matviews apply` and mv.services.create_view, before any SQL runs;
-- configuration files with a syntax error or wrong types.
local H = require "spec.helper"

-- { command, arguments, the error message argparse or the command gives }.
-- The command "" is matviews itself (the main usage).
local LONG = ("n"):rep(64)
local NOT_SIMPLE = "is not a simple identifier (letters, digits and underscores, not starting with a digit)"
local CASES = {
  { "", "nosuch", "unknown command 'nosuch'" },
  { "", "--dsn", "option --dsn needs a value" },
  { "", "--config", "option --config needs a value" },
  { "", "list --dsn", "option --dsn needs a value" },
  { "init", "init --grant-read", "option '--grant-read' requires an argument" },
  { "init", "init extra", "too many arguments" },
  { "init", "init --bogus", "unknown option '--bogus'" },
  { "apply", "apply --definitions", "option '--definitions' requires an argument" },
  { "apply", "apply extra", "too many arguments" },
  { "plan", "plan --definitions", "option '--definitions' requires an argument" },
  { "plan", "plan extra", "too many arguments" },
  { "history", "history", "missing argument 'name'" },
  { "history", "history a b", "too many arguments" },
  { "rollback", "rollback", "missing argument 'name'" },
  { "rollback", "rollback x --to abc", "malformed argument 'abc'" },
  { "rollback", "rollback x", "rollback needs --to N (see matviews history NAME)" },
  { "prune", "prune --batch 0", "--batch needs a positive integer" },
  { "prune", "prune --view", "option '--view' requires an argument" },
  { "prune", "prune extra", "too many arguments" },
  { "migrate", "migrate sideways", "argument 'action' must be one of 'up', 'down', 'status', 'new'" },
  { "migrate", "migrate new", "migrate new: give the migration's name (letters, digits, _ and -)" },
  { "migrate", "migrate new 'a b'", "migrate new: 'a b' is not a migration name (letters, digits, _ and -)" },
  { "migrate", "migrate up x", "migrate up: 'x' is not a count (a positive integer after up or down)" },
  { "migrate", "migrate status 3", "migrate status: '3' is not a count (a positive integer after up or down)" },
  { "migrate", "migrate up 1 2", "too many arguments" },
  { "create", "create", "give view NAMEs, --id N or --all" },
  { "create", "create a --all", "give view NAMEs, --id N or --all, not several of them" },
  { "create", "create --id x", "malformed argument 'x'" },
  { "create", "create --row-count all a", "argument for option '--row-count' must be one of 'none', 'estimated', 'exact'" },
  { "create", "create nope", "no definition named nope" },
  { "refresh", "refresh", "give view NAMEs, --id N or --all" },
  { "refresh", "refresh --id", "option '--id' requires an argument" },
  { "refresh", "refresh --parallel 0 --all", "--parallel takes a whole number of at least 1" },
  { "refresh", "refresh 'x;y'", 'invalid name "x;y": ' .. NOT_SIMPLE },
  { "refresh", "refresh \"a'b\"", [[invalid name "a'b": ]] .. NOT_SIMPLE },
  { "refresh", "refresh 'a b'", 'invalid name "a b": ' .. NOT_SIMPLE },
  { "refresh", "refresh 'a.b.c'", 'invalid name "a.b.c": ' .. NOT_SIMPLE },
  { "refresh", "refresh 'public.x\"y'", 'invalid name "x"y": ' .. NOT_SIMPLE },
  { "delete", "delete", "give view NAMEs, --id N or --all" },
  { "delete", "delete " .. LONG, ('invalid name "%s": is 64 bytes long (at most 63)'):format(LONG) },
  { "delete", "delete --bogus a", "unknown option '--bogus'" },
  { "list", "list extra", "too many arguments" },
  { "runs", "runs --limit 0", 'invalid count "0": use a positive integer' },
  { "runs", "runs --since 3x", 'invalid duration "3x": use a number and a unit s, m, h, d or w (e.g. 90s, 30m, 24h, 7d)' },
  { "runs", "runs a b", "too many arguments" },
  { "runs", "runs 'x;y'", 'invalid name "x;y": ' .. NOT_SIMPLE },
  { "stats", "stats --op drop", "argument for option '--op' must be one of 'create', 'refresh', 'delete'" },
  { "stats", "stats a b", "too many arguments" },
  { "report", "report", "say where to write the page: --html FILE (- for stdout), or --json" },
  { "report", "report --html", "option '--html' requires an argument" },
  { "report", "report --html - --since 3x", 'invalid duration "3x": use a number and a unit s, m, h, d or w (e.g. 90s, 30m, 24h, 7d)' },
  { "report", "report --html - nope", "no definition named nope" },
  { "metrics", "metrics extra", "too many arguments" },
  { "validate", "validate --iterations 0", "expected a whole number >= 1, got '0'" },
  { "validate", "validate --csv", "option '--csv' requires an argument" },
  { "validate", "validate nope", "no definition named nope" },
  { "validate", "validate 'x;y'", 'invalid name "x;y": ' .. NOT_SIMPLE },
  { "deps", "deps a b", "too many arguments" },
  { "deps", "deps nope", "no definition named nope" },
  { "schedule", "schedule extra", "too many arguments" },
  { "enqueue", "enqueue", "missing argument 'op'" },
  { "enqueue", "enqueue refresh", "missing argument 'names'" },
  { "enqueue", "enqueue drop a", "argument 'op' must be one of 'create', 'refresh', 'delete'" },
  { "enqueue", "enqueue refresh nope", "no definition named nope" },
  { "scheduler", "scheduler extra", "too many arguments" },
  { "queue", "queue retry", "queue retry needs a job id (a whole number)" },
  { "queue", "queue cancel x", "queue cancel needs a job id (a whole number)" },
  { "queue", "queue list 3", "queue list takes no job id" },
  { "queue", "queue --status done2", "argument for option '--status' must be one of 'pending', 'running', 'success', 'done', 'failed', 'cancelled'" },
  { "worker", "worker --concurrency 0", "--concurrency and --poll-ms take a positive integer" },
  { "worker", "worker --poll-ms", "option '--poll-ms' requires an argument" },
  { "worker", "worker extra", "too many arguments" },
  { "reconcile", "reconcile extra", "too many arguments" },
  { "db", "db", "missing argument 'action'" },
  { "db", "db explode", "argument 'action' must be one of 'start', 'stop', 'status', 'url', 'destroy'" },
  { "db", "db start now", "too many arguments" },
  { "run", "run", "missing argument 'script'" },
  { "run", "run nightly", "unknown workflow 'nightly' (declared: none)" },
  { "repl", "repl extra", "too many arguments" },
  { "version", "version extra", "too many arguments" },
  { "completion", "completion", "missing argument 'shell'" },
  { "completion", "completion tcsh", "argument 'shell' must be one of 'bash', 'zsh', 'fish'" },
  { "", "help nosuch", "unknown command 'nosuch'" },
  { "help", "help list extra", "too many arguments" },
}

-- The usage line argparse prints for cmd ("" for the main parser).
local function usage_start(cmd)
  return cmd == "" and "Usage: matviews [-h]" or ("Usage: matviews " .. cmd .. " [-h]")
end

local function plain(s) return (s:gsub("%p", "%%%0")) end

describe("every command given missing, extra or invalid arguments", function()
  setup(function()
    H.fresh_db()
    mv.init()
  end)

  it("exits 2 with its usage and the error on stderr, nothing on stdout", function()
    local covered = {}
    for _, c in ipairs(CASES) do
      local r = H.mv(c[2])
      local where = "matviews " .. c[2] .. ": " .. r.err
      assert.are.equal(2, r.code, where)
      assert.are.equal("", r.out, where)
      assert.matches("^" .. plain(usage_start(c[1])), r.err, 1, where)
      assert.are.equal(c[3], H.usage_message(r.err), where)
      covered[c[1]] = true
    end
    for _, name in ipairs(require("matviews.cli").commands) do
      assert.is_true(covered[name], "no bad-argument case for " .. name)
    end
    assert.is_true(covered.help)
  end)

  it("prints the whole help on stderr and exits 2 without a command", function()
    local r = H.mv("")
    assert.are.equal(2, r.code)
    assert.are.equal("", r.out)
    assert.matches("^Usage: matviews %[%-h%]", r.err)
    assert.matches("\nCommands:\n", r.err)
  end)
end)

-- Bad SQL: the value and the message (after "invalid sql: ").
local BAD_SQL = {
  { "DROP TABLE victim", "must be a query starting with SELECT, WITH, VALUES or TABLE" },
  { "CREATE TABLE x AS SELECT 1", "must be a query starting with SELECT, WITH, VALUES or TABLE" },
  { "SELECT 1 AS a; DROP TABLE victim", "must be a single statement (found more after a semicolon)" },
  { "SELECT 1 AS a;\n-- then\nDROP TABLE victim;", "must be a single statement (found more after a semicolon)" },
  { "   \n\t", "is empty" },
  { "-- only a comment", "is empty" },
  { "SELECT 1 AS a\0; DROP TABLE victim", "contains a NUL byte" },
  { "SELECT 1 AS a) x, (SELECT 2", "has a ')' without its '('" },
  { "SELECT (1 AS a", "has a '(' without its ')'" },
  { "SELECT 'a; DROP TABLE victim", "has an unterminated quoted string or identifier" },
}

-- Bad names and the message after "invalid name ".
local BAD_NAMES = {
  { "a'b", [["a'b": ]] .. NOT_SIMPLE },
  { 'a"b', [["a"b": ]] .. NOT_SIMPLE },
  { "a;b", [["a;b": ]] .. NOT_SIMPLE },
  { "x; DROP TABLE victim; --", [["x; DROP TABLE victim; --": ]] .. NOT_SIMPLE },
  { "public.a.b", [["public.a.b": ]] .. NOT_SIMPLE, cli = false }, -- "schema.name" is a qualified name
  { "a b", [["a b": ]] .. NOT_SIMPLE },
  { LONG, ('"%s": is 64 bytes long (at most 63)'):format(LONG) },
  { ("é"):rep(32), ('"%s": is 64 bytes long (at most 63)'):format(("é"):rep(32)) },
  { "a\0b", nil, "invalid name: contains a NUL byte" },
}

-- A Lua string literal for s (NUL and quotes escaped).
local function lua_literal(s) return (("%q"):format(s):gsub("\\\n", "\\n")) end

describe("definitions that are refused before any SQL runs", function()
  local dir

  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE victim (x int)")
    mv.exec("INSERT INTO victim VALUES (1)")
    dir = H.tmpfile("_defs")
    os.execute("mkdir -p " .. H.q(dir))
  end)

  -- Asserts nothing was stored or created and victim is intact.
  local function untouched(name)
    assert.are.equal(0, #mv.query("SELECT 1 FROM mat_view_definitions"))
    assert.are.equal(0, #mv.query("SELECT 1 FROM pg_matviews"))
    assert.are.equal(1, mv.query("SELECT count(*) AS n FROM victim")[1].n, name)
  end

  -- Applies one definition file; returns the CLI result.
  local function apply_file(text)
    H.write(dir .. "/v.lua", text)
    return H.mv("apply --definitions " .. H.q(dir))
  end

  it("refuses SQL that is not one query: save, apply and create_view", function()
    for _, c in ipairs(BAD_SQL) do
      local sql, want = c[1], "invalid sql: " .. c[2]
      local ok, e = pcall(mv.definitions.save, { name = "v", sql = sql })
      assert.is_false(ok, sql)
      assert.are.same({ want, "sql" }, { e.message, e.field }, sql)

      local r = mv.services.create_view({ name = "v", sql = sql }, {})
      assert.are.same({ "error", false, want, "42601", {} },
        { r.status, r.success, r.error.message, r.error.sqlstate, r.response.sql }, sql)

      r = apply_file("view \"v\" {\n  sql = " .. lua_literal(sql) .. ",\n}\n")
      assert.are.equal(2, r.code, sql)
      local msg = c[1]:match("^%s*$") and [[key 'sql' must be a non-empty SELECT, got ]] .. ("%q"):format(sql)
        or ("key 'sql': " .. c[2])
      assert.are.equal(("%s/v.lua:2: view 'v': %s\n1 error in definitions; nothing applied\n"):format(dir, msg),
        r.err, sql)
      untouched(sql)
    end
  end)

  it("refuses names with quotes, semicolons, dots, spaces, 64+ bytes, NUL: save, apply, create_view, CLI", function()
    for _, c in ipairs(BAD_NAMES) do
      local name, want = c[1], c[3] or ("invalid name " .. c[2])
      local ok, e = pcall(mv.definitions.save, { name = name, sql = "SELECT 1 AS a" })
      assert.is_false(ok, name)
      assert.are.same({ want, "name" }, { e.message, e.field }, name)

      local r = mv.services.create_view({ name = name, sql = "SELECT 1 AS a" }, {})
      assert.are.same({ "error", want, "42602", {} }, { r.status, r.error.message, r.error.sqlstate, r.response.sql }, name)
      r = mv.services.delete_view({ name = name }, {})
      assert.are.same({ "error", want }, { r.status, r.error.message }, name)

      r = apply_file("view " .. lua_literal(name) .. " { sql = \"SELECT 1 AS a\" }\n")
      assert.are.equal(2, r.code, name)
      assert.are.equal(("%s/v.lua:1: %s\n1 error in definitions; nothing applied\n"):format(dir, want), r.err, name)
      untouched(name)
    end
    for _, c in ipairs(BAD_NAMES) do
      if not c[3] and c.cli ~= false then -- a NUL byte cannot be an argument
        local r = H.mv("refresh --yes " .. H.q(c[1]))
        assert.are.same({ 2, "", "invalid name " .. c[2] }, { r.code, r.out, H.usage_message(r.err) }, c[1])
      end
    end
  end)

  it("refuses other fields holding NUL bytes or what is no data", function()
    local bad = {
      { { comment = "ok\0; DROP TABLE victim" }, "invalid comment: contains a NUL byte" },
      { { indexes = { { "a\0b" } } }, "invalid indexes: an index column contains a NUL byte" },
      { { schedule_cron = "'; DROP TABLE victim; --" }, 'invalid schedule_cron: "\'; DROP TABLE victim; --": minute: unexpected byte 0x27' },
      { { retention = { keep_last = "1; DROP TABLE victim" } }, "invalid retention: must be a policy { keep_last = N, keep_days = D, keep_failures = bool } or a function (keep_last: a non-negative integer)" },
      { { options = { row_count = "exact; DROP TABLE victim" } }, 'invalid options: row_count must be "none", "estimated" or "exact"' },
      { { grants = { { role = "r", privileges = { "SELECT; DROP TABLE victim" } } } }, "invalid grants: 'SELECT; DROP TABLE victim' is no privilege" },
      { { grants = { "" } }, "invalid grants: role names must be strings of 1 to 63 bytes without NUL bytes" },
    }
    for _, c in ipairs(bad) do
      local t = { name = "v", sql = "SELECT 1 AS a" }
      for k, v in pairs(c[1]) do t[k] = v end
      local ok, e = pcall(mv.definitions.save, t)
      assert.is_false(ok, c[2])
      assert.are.equal(c[2], e.message)
    end
    local r = mv.services.create_view({ name = "v", sql = "SELECT 1 AS a", comment = "x\0y" }, {})
    assert.are.same({ "error", "invalid comment: contains a NUL byte", {} }, { r.status, r.error.message, r.response.sql })
    r = mv.services.create_view({ name = "v", sql = "SELECT 1 AS a", indexes = { { "a\0; DROP" } } }, {})
    assert.are.same({ "error", "invalid indexes: contains a NUL byte" }, { r.status, r.error.message })
    untouched("other fields")
  end)
end)

describe("a configuration file with a syntax error or wrong types", function()
  setup(function() H.fresh_db() end)

  -- Runs `matviews --config FILE list` with text as the file.
  local function with_config(text)
    local f = H.write(H.tmpfile(".lua"), text)
    return f, H.mv("--config " .. H.q(f) .. " list")
  end

  it("names file and line and exits 1, whatever the command", function()
    local f, r = with_config("job_adapter = \"inline\"\nlock_timeout_ms = = 3\n")
    assert.are.same({ 1, "", ("matviews: %s:2: unexpected symbol near '='\n"):format(f) }, { r.code, r.out, r.err })

    f, r = with_config("-- settings\njob_adapter = \"inline\"\nlock_timeout_ms = \"soon\"\nretry = 5\njob_adaptor = \"queue\"\n")
    assert.are.same({ 1, "", table.concat({
      ("matviews: %s:5: unknown key 'job_adaptor' (did you mean 'job_adapter'?)"):format(f),
      ("%s:3: key 'lock_timeout_ms' must be a non-negative integer, got \"soon\""):format(f),
      ("%s:4: key 'retry' must be a table { attempts, base_ms, max_ms }, got number"):format(f),
    }, "\n") .. "\n" }, { r.code, r.out, r.err })

    f, r = with_config("return { job_adapter = 'cron' }\n")
    assert.are.same({ 1, ('matviews: %s:1: key \'job_adapter\' must be one of "inline", "queue", got "cron"\n'):format(f) },
      { r.code, r.err })

    f, r = with_config("job_adapter = 'queue'\nreturn 42\n")
    assert.are.same({ 1, ('matviews: %s:2: the configuration returns a number: set keys (job_adapter = "queue") or return a table\n'):format(f) },
      { r.code, r.err })

    f, r = with_config("error('no config today')\n")
    assert.are.same({ 1, ("matviews: %s:1: no config today\n"):format(f) }, { r.code, r.err })

    r = H.mv("--config /nonexistent/matviews.lua refresh --all --yes")
    assert.are.same({ 1, "matviews: cannot open /nonexistent/matviews.lua: No such file or directory\n" }, { r.code, r.err })
  end)
end)
