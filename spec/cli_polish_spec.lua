-- The daily-use commands of the CLI: `runs show OP:ID` (one run in full,
-- text and --json, and its refusals).
local H = require "spec.helper"
local mv = require "matviews"

describe("matviews runs show", function()
  local long
  setup(function()
    H.fresh_db()
    mv.init()
    long = "bad: " .. ("x"):rep(300)
    mv.definitions.save({ name = "ok_view", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "bad_view", sql = "SELECT 1 / 0 AS x" })
    assert.are.equal("success", mv.create("ok_view").status)
    assert.are.equal("failed", mv.create("bad_view").status)
    assert.are.equal("success", mv.refresh("ok_view", { row_count_strategy = "exact" }).status)
    mv.exec("UPDATE mat_view_create_runs SET error = $1 WHERE id = 2", long)
  end)

  it("prints a failed run in full: error, attempts, SQL, meta", function()
    local r = H.mv("runs show create:2")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^create:2 of bad_view: failed\n", r.out)
    assert.matches("\n  attempts   1\n    1  error    %d+ ms  division by zero %(SQLSTATE 22012%)\n", r.out)
    assert.matches("\nerror (SQLSTATE 22012):\n  " .. long .. "\n", r.out, 1, true)
    assert.matches('\nsql executed:\n  CREATE MATERIALIZED VIEW "public"."bad_view" AS\n  SELECT 1 / 0 AS x\n  WITH DATA;\n',
      r.out, 1, true)
    assert.matches("\nmeta:\n  {\n", r.out, 1, true)
    assert.matches('\n    service_status = "error",\n', r.out, 1, true)
  end)

  it("takes refresh/1 too, and --json gives the same run", function()
    local r = H.mv("runs show refresh/1")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^refresh:1 of ok_view: success\n", r.out)
    assert.matches("\n  rows       1\n", r.out, 1, true)
    assert.matches("\n  strategy   regular\n", r.out, 1, true)
    local j = mv.json.decode(H.mv("--json runs show create:2").out)
    assert.are.same({ "create", 2, "bad_view", "failed", long, "22012" },
      { j.op, j.id, j.view, j.status, j.error, j.meta.error.sqlstate })
  end)

  it("says how to find a run that does not exist, and refuses a malformed one", function()
    local r = H.mv("runs show refresh:99")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: no refresh run 99: `matviews runs --op refresh` lists them\n", r.err)
    r = H.mv("runs show 4")
    assert.are.equal(2, r.code)
    assert.are.equal('invalid run "4": use OP:ID, OP one of create, refresh, delete (e.g. refresh:4)', H.usage_message(r.err))
    r = H.mv("runs ok_view refresh:1")
    assert.are.equal(2, r.code)
    assert.are.equal("too many arguments", H.usage_message(r.err))
  end)
end)

describe("the shell completion scripts", function()
  it("complete commands in bash, through compgen", function()
    local file = H.tmpfile(".bash")
    local r = H.mv("completion bash")
    assert.are.equal(0, r.code, r.err)
    H.write(file, r.out)
    local function complete(words)
      local out = H.sh(("bash -c %s"):format(H.q(("source %s; complete -p matviews; COMP_WORDS=(%s); COMP_CWORD=%d; "
        .. "_matviews; printf '%%s\\n' \"${COMPREPLY[@]}\""):format(H.q(file), words, select(2, words:gsub(" ", " "))))))
      assert.are.equal(0, out.code, out.err)
      local lines = {}
      for l in out.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
      table.remove(lines, 1)
      table.sort(lines)
      return lines, out.out
    end
    local words, all = complete("matviews re")
    assert.matches("^complete %-o bashdefault %-o default %-F _matviews matviews\n", all)
    assert.are.same({ "reconcile", "refresh", "repl", "report" }, words)
    assert.are.same({ "--since" }, (complete("matviews report --si")))
    assert.are.same({ "--parallel" }, (complete("matviews refresh --par")))
  end)

  it("exist for zsh and fish", function()
    assert.matches("^#compdef matviews\n", H.mv("completion zsh").out)
    assert.matches("complete %-c matviews", H.mv("completion fish").out)
  end)
end)

describe("the manual page", function()
  it("is made from the CLI's help and renders with man -l", function()
    local page = H.tmpfile(".1")
    local r = H.sh(("sh tools/man.sh %s %s"):format(H.q(H.bin), H.q(page)))
    assert.are.equal(0, r.code, r.err)
    r = H.sh(("MANWIDTH=100 man -P cat -l %s"):format(H.q(page)))
    assert.are.equal(0, r.code, r.err)
    assert.matches("\nNAME\n       matviews %- PostgreSQL materialized views, managed from Lua\n", r.out)
    assert.matches("\nSYNOPSIS\n       matviews  %[%-h%]", r.out)
    assert.matches("\nCOMMANDS\n   init\n       Usage: matviews init", r.out)
    assert.matches("\n   report\n       Usage: matviews report ", r.out)
  end)
end)

describe("every command's help", function()
  it("names no Lua module", function()
    for _, name in ipairs(require("matviews.cli").commands) do
      local text = H.mv("help " .. name).out
      for m in text:gmatch("matviews%.([%w_]+)") do
        assert.is_nil(package.searchpath("matviews." .. m, package.path), name .. " --help names matviews." .. m)
      end
    end
  end)
end)

describe("matviews migrate new", function()
  it("writes the next migration with an up/down skeleton that migrate runs", function()
    H.fresh_db("cli_polish_migrate")
    local dir = H.tmpfile("_proj")
    os.execute("mkdir -p " .. H.q(dir))
    H.write(dir .. "/matviews.lua", "")
    local function mvin(args) return H.sh("cd " .. H.q(dir) .. " && " .. H.q(mv.core.sys.getcwd() .. "/" .. H.bin) .. " " .. args) end
    local r = mvin("migrate new add_source")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("created migrations/001_add_source.lua\n", r.out)
    assert.are.equal("created migrations/002_backfill-x\n", mvin("migrate new backfill-x").out:gsub("%.lua\n$", "\n"))
    local m = dofile(dir .. "/migrations/001_add_source.lua")
    assert.are.equal("function", type(m.up))
    assert.are.equal("function", type(m.down))
    r = mvin("migrate up")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^applied 001_add_source %(%d+ ms%)\napplied 002_backfill%-x %(%d+ ms%)\n$", r.out)
    assert.are.equal(0, mvin("migrate down 2").code)
  end)
end)

describe("the REPL's help", function()
  it("prints a guide: mv functions, cancelling, leaving", function()
    local r = H.mv("repl", { stdin = "help\nhelp()\n" })
    assert.are.equal(0, r.code, r.err)
    local guide = require("matviews.repl").GUIDE .. "\n"
    assert.are.equal(guide .. guide, r.out)
    assert.matches("mv.query(sql, ...)", guide, 1, true)
    assert.matches("Ctrl-C cancels the running query or drops the line; Ctrl-D or os.exit() leaves.", guide, 1, true)
  end)
end)

describe("numbers in tables", function()
  it("stats prints durations in whole milliseconds", function()
    H.fresh_db("cli_polish_stats")
    mv.init()
    mv.definitions.save({ name = "v", sql = "SELECT 1 AS x" })
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms,
        rows_count, created_at)
      SELECT d.id, 2, now() - make_interval(mins => g::int), now() - make_interval(mins => g::int), ms, 1, now() - make_interval(mins => g::int)
      FROM mat_view_definitions d, unnest(ARRAY[395, 396, 395, 395, 395]) WITH ORDINALITY AS u(ms, g)]])
    local r = H.mv("stats")
    assert.are.equal(0, r.code, r.err)
    assert.matches("\nv +5 +0 +395 +395 +396 +396 +success +395 +1 ", r.out)    -- AVG 395.2, P95 395.8
    assert.are.equal(395.2, mv.json.decode(H.mv("--json stats").out)[1].avg_ms)
  end)
end)

describe("errors that say what to do next", function()
  local config
  setup(function()
    H.fresh_db("cli_polish_errors")
    mv.init()
    mv.definitions.save({ name = "base_v", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "top_v", sql = "SELECT x FROM base_v" })
    mv.definitions.save({ name = "never_v", sql = "SELECT 2 AS x" })
    assert.are.equal("success", mv.create("base_v").status)
    assert.are.equal("success", mv.create("top_v").status)
    config = H.write(H.tmpfile(".lua"), "lock_timeout_ms = 100\nretry = { attempts = 2, base_ms = 10, max_ms = 20 }\n")
  end)

  it("create of an existing view names --force", function()
    local r = H.mv("create base_v --yes")
    assert.are.equal(1, r.code)
    assert.matches("^%[1/1%] create base_v: failed in %d+ ms: materialized view public.base_v already exists: "
      .. "`matviews create %-%-force public.base_v` %(force = true from Lua%) drops and recreates it\n$", r.out)
  end)

  it("create --force of a view with dependents names them and the way out", function()
    local r = H.mv("create base_v --force --yes")
    assert.are.equal(1, r.code)
    assert.matches("create base_v: failed in %d+ ms: cannot recreate materialized view public.base_v: other objects "
      .. "depend on it %(materialized view public.top_v%); `matviews delete %-%-cascade public.base_v` %(cascade = true "
      .. "from Lua%) drops them too, then `matviews create %-%-all` creates them again\n$", r.out)
    assert.are.equal(1, mv.query("SELECT count(*) AS n FROM pg_matviews WHERE matviewname = 'top_v'")[1].n)
  end)

  it("refresh of a view never created says to create it", function()
    local r = H.mv("refresh never_v --yes")
    assert.are.equal(1, r.code)
    assert.matches("refresh never_v: failed in %d+ ms: materialized view public.never_v does not exist: "
      .. "`matviews create public.never_v` creates it\n$", r.out)
  end)

  it("a lock timeout names the attempts and the pid and application holding the lock", function()
    local holder = mv.connect("dbname=" .. H.dbname .. " application_name=spec_holder")
    holder:exec("BEGIN")
    holder:query("SELECT * FROM base_v")
    local pid = holder:query("SELECT pg_backend_pid() AS p")[1].p
    local r = H.mv("--config " .. H.q(config) .. " refresh base_v --yes")
    holder:exec("ROLLBACK")
    holder:close()
    assert.are.equal(1, r.code)
    assert.matches(("refresh base_v: failed in %%d+ ms: canceling statement due to lock timeout after 2 attempts; "
      .. "public.base_v is locked by pid %d %%(spec_holder, idle in transaction%%): wait for it, or end it with "
      .. "SELECT pg_terminate_backend%%(%d%%)\n$"):format(pid, pid), r.out)
  end)
end)
