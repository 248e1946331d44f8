-- Security: the catalog has no PUBLIC grants (even where default privileges
-- would give some), `init --grant-read ROLE` gives read-only access,
-- passwords of a DSN or URL never show up in output, errors, run rows or
-- logs, and no definition field makes matviews run SQL of its choosing.
local H = require "spec.helper"

local READER = "mv_sec_reader"
local PASSWORD = "s3cr3t"

-- Every table and sequence matviews created, with its kind.
local CATALOG = [[SELECT c.relname, c.relkind::text AS kind, c.relacl, c.relowner FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')
       AND (c.relname LIKE 'mat\_view\_%' OR c.relname LIKE 'matviews\_%')]]
local function catalog_relations()
  return mv.query("SELECT relname, kind FROM (" .. CATALOG .. ") c ORDER BY 1")
end

-- Creates role name (LOGIN) unless it exists: roles are cluster-wide.
local function ensure_role(name)
  if #mv.query("SELECT 1 FROM pg_roles WHERE rolname = $1", name) == 0 then
    mv.exec("CREATE ROLE " .. mv.conn():quote_ident(name) .. " LOGIN")
  end
end

describe("catalog privileges", function()
  setup(function()
    H.fresh_db()
    -- what a careless database may say about every new table and sequence
    mv.exec("ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC")
    mv.exec("ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO PUBLIC")
    assert.are.equal(0, H.mv("init").code)
  end)

  it("gives PUBLIC nothing on any table or sequence of the catalog, whatever the default privileges", function()
    local rels = catalog_relations()
    assert.is_true(#rels >= 13) -- 8 tables, 5 sequences
    local public = mv.query([[SELECT c.relname, a.privilege_type FROM (]] .. CATALOG .. [[) c
        CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.kind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
       WHERE a.grantee = 0]])
    assert.are.same({}, { table.unpack(public) })
    -- the same default privileges do reach a table matviews did not create
    mv.exec("CREATE TABLE sec_other (x int)")
    assert.are.equal(1, #mv.query([[SELECT 1 FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
      WHERE c.relname = 'sec_other' AND a.grantee = 0 AND a.privilege_type = 'SELECT']]))
  end)

  it("init --grant-read ROLE lets the role read every table, and write none", function()
    ensure_role(READER)
    local r = H.mv("init --grant-read " .. READER)
    assert.are.equal(0, r.code, r.err)
    local tables = {}
    for _, t in ipairs(catalog_relations()) do
      if t.kind ~= "S" then tables[#tables + 1] = t.relname end
    end
    assert.are.equal(("catalog up to date (version %d)\ngranted SELECT on %d tables to %s\n")
      :format(require("matviews.catalog").version(), #tables, READER), r.out)
    local conn <close> = mv.connect(("dbname=%s user=%s"):format(H.dbname, READER))
    for _, t in ipairs(tables) do
      local q = conn:quote_ident(t)
      local col = mv.query("SELECT quote_ident(attname) AS a FROM pg_attribute WHERE attrelid = $1::regclass AND attnum = 1", q)[1].a
      assert.is_table(conn:query("SELECT * FROM " .. q .. " LIMIT 1"), t)
      for _, sql in ipairs({ "INSERT INTO " .. q .. " DEFAULT VALUES", ("UPDATE %s SET %s = %s"):format(q, col, col),
                             "DELETE FROM " .. q, "TRUNCATE " .. q }) do
        local ok, e = pcall(conn.exec, conn, sql)
        assert.is_false(ok, sql)
        assert.are.same({ "42501", ("permission denied for table %s"):format(t) }, { e.sqlstate, e.message }, sql)
      end
    end
  end)

  it("quotes the role of --grant-read and refuses one that does not exist", function()
    mv.exec("CREATE TABLE IF NOT EXISTS victim (x int)")
    local odd = [[mv_sec "odd"; reader]]
    ensure_role(odd)
    local r = H.mv("init --grant-read " .. H.q(odd))
    assert.are.equal(0, r.code, r.err)
    r = H.mv("init --grant-read " .. H.q("x; DROP TABLE victim"))
    assert.are.same({ 1, 'matviews: --grant-read: role "x; DROP TABLE victim" does not exist\n' }, { r.code, r.err })
    assert.is_not_nil(mv.query("SELECT to_regclass('victim') AS t")[1].t)
    mv.exec("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM " .. mv.conn():quote_ident(odd))
    mv.exec("DROP ROLE " .. mv.conn():quote_ident(odd))
  end)
end)

describe("passwords of a DSN or URL", function()
  local dsn, url, dir

  setup(function()
    H.fresh_db()
    mv.init()
    local host, port = os.getenv("PGHOST"), os.getenv("PGPORT")
    -- trust authentication ignores the password: every command works
    dsn = ("host=%s port=%s dbname=%s user=postgres password=%s"):format(host, port, H.dbname, PASSWORD)
    url = ("postgresql://postgres:%s@/%s?host=%s&port=%s"):format(PASSWORD, H.dbname, host, port)
    mv.definitions.save({ name = "sec_ok", sql = "SELECT 1 AS a" })
    mv.definitions.save({ name = "sec_bad", sql = "SELECT 1 / (SELECT count(*) FROM pg_class WHERE false) AS a" })
    dir = H.tmpfile("_defs")
    os.execute("mkdir -p " .. H.q(dir))
    H.write(dir .. "/v.lua", 'view "sec_ok" { sql = "SELECT 1 AS a" }\n')
  end)

  -- Asserts the password is nowhere in text.
  local function clean(text, what)
    assert.is_nil(text:find(PASSWORD, 1, true), what .. ": " .. text)
  end

  it("appear in no output, error, run row or log, with --verbose, --json, a URL or a refused connection", function()
    local runs = {
      "create sec_ok sec_bad", "refresh sec_ok", "refresh sec_bad", "refresh --all --parallel 2",
      "refresh nope", "apply --definitions " .. H.q(dir), "list", "runs", "stats", "validate sec_ok",
      "enqueue refresh sec_ok", "worker --once --concurrency 2", "reconcile", "init",
      "run " .. H.q(H.write(H.tmpfile(".lua"), "error('from a script')")),
    }
    for _, cmd in ipairs(runs) do -- text with the DSN, JSON with the URL
      for _, how in ipairs({ { "", dsn }, { "--json ", url } }) do
        local r = H.mv(("--verbose --yes %s--dsn %s %s"):format(how[1], H.q(how[2]), cmd))
        clean(r.out .. r.err, cmd)
      end
    end
    local r = H.mv("--verbose --dsn " .. H.q(dsn) .. " refresh sec_ok --yes")
    assert.are.equal(0, r.code)
    assert.matches("^matviews: connecting to host=%S+ port=%d+ dbname=spec_security user=postgres password=%*%*%* %(dsn%)\n", r.err)
    -- a refused connection: the error names host and port, not the password
    for _, bad in ipairs({ dsn:gsub("port=%d+", "port=1"), dsn:gsub("user=postgres", "user=nobody_here"),
                           "postgresql://u:" .. PASSWORD .. "@127.0.0.1:1/x", "host=127.0.0.1 port=1 password='" .. PASSWORD .. " x\\'y'" }) do
      r = H.mv("--verbose --dsn " .. H.q(bad) .. " refresh sec_ok --yes")
      assert.are.equal(1, r.code, bad)
      clean(r.out .. r.err, bad)
      assert.matches("could not connect to host", r.err)
    end
    -- the runs were recorded (successes and failures), without it
    local rows = mv.query([[SELECT meta::text AS m, coalesce(error, '') AS e FROM mat_view_create_runs
      UNION ALL SELECT meta::text, coalesce(error, '') FROM mat_view_refresh_runs
      UNION ALL SELECT coalesce(options::text, ''), coalesce(error, '') FROM matviews_jobs]])
    assert.is_true(#rows > 10)
    local failed = 0
    for _, row in ipairs(rows) do
      clean(row.m .. row.e, "run row")
      if row.e:match("division by zero") then failed = failed + 1 end
    end
    assert.is_true(failed > 0)
    -- the server's log and the embedded cluster's log
    local logs = 0
    for _, path in ipairs({ os.getenv("MATVIEWS_SPEC_TMP") .. "/server.log", os.getenv("MATVIEWS_HOME") .. "/embed.log" }) do
      local f = io.open(path, "rb")
      if f then
        clean(f:read("a"), path)
        f:close()
        logs = logs + 1
      end
    end
    assert.is_true(logs >= 1)
  end)

  -- The command lines (/proc/PID/cmdline, what ps shows) of this host's
  -- processes that contain marker, NULs as spaces.
  local function cmdlines(marker)
    local out = {}
    for _, pid in ipairs(mv.core.sys.listdir("/proc") or {}) do
      local f = pid:match("^%d+$") and io.open("/proc/" .. pid .. "/cmdline", "rb")
      if f then
        local line = (f:read("a") or ""):gsub("%z", " ")
        f:close()
        if line:find(marker, 1, true) then out[#out + 1] = line end
      end
    end
    return out
  end

  it("stay off the command lines of child processes (worker --concurrency, refresh --parallel)", function()
    local P = require "spec.proc_helper"
    for i = 1, 3 do mv.definitions.save({ name = "sec_slow" .. i, sql = "SELECT 1 AS a FROM pg_sleep(1.5)" }) end
    assert.are.equal(0, H.mv("create sec_slow1 sec_slow2 sec_slow3 --no-data --yes").code)
    for _, case in ipairs({
      { args = "worker --once --concurrency 3", marker = "--child",
        before = function() for i = 1, 3 do H.mv("enqueue refresh sec_slow" .. i) end end },
      { args = "refresh sec_slow1 sec_slow2 sec_slow3 --yes --parallel 3", marker = "matviews.parallel" },
    }) do
      if case.before then case.before() end
      local p = P.spawn("--dsn " .. H.q(dsn) .. " " .. case.args)
      local seen = P.wait_for("child processes of " .. case.args, function()
        local lines = cmdlines(case.marker)
        return #lines > 0 and lines
      end)
      for _, line in ipairs(seen) do clean(line, case.args .. " child") end
      local r = P.wait(p)
      assert.are.equal(0, r.code, case.args .. ": " .. r.err)
      clean(r.out .. r.err, case.args)
    end
    -- and each child did its work on the database of --dsn
    assert.are.equal(6, mv.query([[SELECT count(*)::int AS n FROM mat_view_refresh_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
      WHERE d.name LIKE 'sec_slow%' AND r.status = 2]])[1].n)
  end)

  it("reach child processes over an inherited connection string of a parent", function()
    -- a matviews started by a child (a hook, a workflow) inherits the
    -- variable; its own --dsn must be what its children use
    local r = H.mv("--dsn " .. H.q(dsn) .. " refresh sec_ok --yes --parallel 2",
      { env = { MATVIEWS_CHILD_DSN = "host=/nonexistent port=1 dbname=none" } })
    assert.are.equal(0, r.code, r.err)
    assert.matches("refresh sec_ok: success", r.out .. r.err)
  end)
end)

describe("definitions trying to run SQL of their own", function()
  local dir

  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE victim (x int)")
    mv.exec("INSERT INTO victim VALUES (1), (2)")
    mv.exec("CREATE TABLE base (a int)")
    mv.exec("INSERT INTO base VALUES (1)")
    dir = H.tmpfile("_defs")
    os.execute("mkdir -p " .. H.q(dir))
  end)

  local function victim_intact()
    assert.are.equal(2, mv.query("SELECT count(*) AS n FROM victim")[1].n)
  end

  -- Saves t (fields over a valid definition); returns ok, error message.
  local function save(fields)
    local t = { name = "sec_v", sql = "SELECT a FROM base" }
    for k, v in pairs(fields) do t[k] = v end
    local ok, e = pcall(mv.definitions.save, t)
    return ok, ok and e or e.message
  end

  it("refuses injection in name, sql, unique columns, dependencies, schedule, retention, privileges", function()
    local refused = {
      { name = "sec_v; DROP TABLE victim; --" },
      { sql = "SELECT a FROM base; DROP TABLE victim" },
      { sql = "SELECT a FROM base) x, (SELECT 1" },
      { refresh_strategy = "concurrent", unique_index_columns = { "a); DROP TABLE victim; --" } },
      { dependencies = { "base; DROP TABLE victim" } },
      { schedule_cron = "* * * * *'; DROP TABLE victim; --" },
      { retention = { keep_days = "1 day'); DROP TABLE victim; --" } },
      { grants = { { role = "r", privileges = { "ALL ON victim TO PUBLIC; DROP TABLE victim; --" } } } },
      { options = { row_count = "exact; DROP TABLE victim" } },
    }
    for _, f in ipairs(refused) do
      local ok, msg = save(f)
      assert.is_false(ok, require("cjson").encode(f))
      assert.matches("^invalid ", msg)
    end
    local r = mv.services.create_view({ name = "sec_v", sql = "SELECT a FROM base", refresh_strategy = "concurrent",
      unique_index_columns = { "a); DROP TABLE victim; --" } }, {})
    assert.are.same({ "error", "42602" }, { r.status, r.error.sqlstate })
    assert.are.same({}, r.response.sql)
    assert.are.equal(0, #mv.query("SELECT 1 FROM mat_view_definitions"))
    victim_intact()
  end)

  it("uses comment, index columns and grant roles as quoted data", function()
    local comment = "'; DROP TABLE victim; --"
    local d = mv.definitions.save({ name = "sec_v", sql = "SELECT a FROM base", comment = comment,
      grants = { "x; DROP TABLE victim" } })
    assert.are.same({ { role = "x; DROP TABLE victim", privileges = { "SELECT" } } }, d.grants)
    local r = H.mv("create sec_v --yes")
    -- the role is quoted: no such role, so the create fails as a whole
    assert.are.equal(1, r.code, r.err)
    assert.matches('role "x; DROP TABLE victim" does not exist', r.out .. r.err, 1, true)
    assert.are.equal(mv.null, mv.query("SELECT to_regclass('sec_v') AS t")[1].t)
    victim_intact()
    mv.definitions.save({ name = "sec_v", sql = "SELECT a FROM base", comment = comment })
    r = H.mv("create sec_v --yes")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(comment, mv.query("SELECT obj_description('sec_v'::regclass, 'pg_class') AS c")[1].c)

    r = mv.services.create_view({ name = "sec_w", sql = "SELECT a FROM base",
      indexes = { { 'a"); DROP TABLE victim; --' } } }, {})
    assert.are.same({ "error", "42703", 'column "a"); DROP TABLE victim; --" does not exist' },
      { r.status, r.error.sqlstate, r.error.message })
    assert.are.equal(mv.null, mv.query("SELECT to_regclass('sec_w') AS t")[1].t) -- rolled back whole

    -- a definition file on the live view: index and grant are quoted when applied
    H.write(dir .. "/v.lua", ([[view "sec_v" {
  sql = "SELECT a FROM base", comment = %q,
  indexes = { { 'a"); DROP TABLE victim; --' } },
}
]]):format(comment))
    r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(2, r.code) -- refused by the rehearsal, which builds the index in a rolled-back transaction
    assert.matches('column "a"%); DROP TABLE victim; %-%-" does not exist', r.err)
    H.write(dir .. "/v.lua", ([[view "sec_v" {
  sql = "SELECT a FROM base", comment = %q, grants = { ["x; DROP TABLE victim"] = "SELECT" },
}
]]):format(comment))
    r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(2, r.code)
    assert.matches("view 'sec_v': grants: role x; DROP TABLE victim does not exist", r.err, 1, true)
    victim_intact()
  end)

  it("runs the SQL of a definition read-only where it runs it outside CREATE (validate)", function()
    mv.definitions.save({ name = "sec_val", sql = "SELECT a FROM base" })
    assert.are.equal(0, H.mv("create sec_val --yes").code)
    -- a catalog row edited by hand after the view was made
    mv.exec("UPDATE mat_view_definitions SET sql = $1 WHERE name = 'sec_val'",
      "WITH gone AS (DELETE FROM victim RETURNING x) SELECT count(*)::int AS a FROM gone")
    local r = H.mv("validate sec_val --iterations 1")
    assert.are.equal(1, r.code)
    assert.matches("read%-only transaction", r.err)
    victim_intact()
    r = H.mv("plan --definitions " .. H.q(dir))
    victim_intact()
  end)
end)
