-- The create, refresh and delete commands as a command line: targets
-- (NAME..., schema-qualified, --id, --all), the prompt, options over env,
-- progress lines, --json and exit codes. They run the real jobs on real
-- (cheap) views: what a command passed its jobs is read back from the run
-- rows (op, view, order, and meta: force, no_data, cascade, if_exists,
-- row_count_strategy). cli_jobs_spec.lua follows the runs into the reports.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- The runs of the three run tables, in the order they started.
local RUNS = [[
SELECT r.op, d.name, (ARRAY['pending', 'running', 'success', 'failed'])[r.status + 1] AS status, r.meta::text AS meta FROM (
  SELECT 'create' AS op, id, mat_view_definition_id, status, meta, started_at FROM mat_view_create_runs
  UNION ALL SELECT 'refresh', id, mat_view_definition_id, status, meta, started_at FROM mat_view_refresh_runs
  UNION ALL SELECT 'delete', id, mat_view_definition_id, status, meta, started_at FROM mat_view_delete_runs) r
JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
ORDER BY r.started_at, r.op, r.id]]

-- Runs the CLI on a run history emptied first; returns the result with the
-- runs it recorded (r.runs: { op, name, status, meta = table }).
-- opts.tty: run with a terminal on stdin (H.tty), opts.stdin typed at it.
-- An empty definitions directory (apply --prune then drops every view).
local function empty_dir()
  local d = H.tmpfile("_nodefs")
  os.execute("mkdir -p " .. H.q(d))
  return d
end

local function cli(args, opts)
  mv.exec("TRUNCATE mat_view_create_runs, mat_view_refresh_runs, mat_view_delete_runs")
  local r = (opts and opts.tty) and H.tty(args, opts) or H.mv(args, opts)
  r.runs = mv.query(RUNS)
  for _, run in ipairs(r.runs) do run.meta = cjson.decode(run.meta) end
  return r
end

-- "op name" of each run, in the order they started.
local function called(r)
  local t = {}
  for i, run in ipairs(r.runs) do t[i] = run.op .. " " .. run.name end
  return t
end

-- The options the only run of r was given, as its meta records them.
local function passed(r, ...)
  assert.are.equal(1, #r.runs)
  local out = {}
  for _, k in ipairs({ ... }) do out[k] = r.runs[1].meta[k] end
  return out
end

local function exists(name)
  return mv.query("SELECT 1 FROM pg_matviews WHERE schemaname = 'public' AND matviewname = $1", name)[1] ~= nil
end

-- Puts each view named in place (created from its definition when missing).
local function ensure(...)
  for _, name in ipairs({ ... }) do
    if not exists(name) then assert.is_true(mv.services.create_view(name).success) end
  end
end

local function drop(...)
  for _, name in ipairs({ ... }) do mv.exec("DROP MATERIALIZED VIEW IF EXISTS " .. name) end
end

-- b's query divides by b_src.d: 0 makes every create and refresh of b fail.
local function b_fails(yes)
  mv.exec("UPDATE b_src SET d = $1", yes and 0 or 1)
end

describe("create, refresh and delete", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE b_src (d int)")
    mv.exec("INSERT INTO b_src VALUES (1)")
    -- a declares that it reads c: --all runs b, c, a (delete: a, c, b);
    -- a counts its rows exactly unless told otherwise, b and c as configured
    mv.definitions.save({ name = "a", sql = "SELECT 1 AS x", dependencies = { "c" }, options = { row_count = "exact" } })
    mv.definitions.save({ name = "b", sql = "SELECT 10 / d AS x FROM b_src" })
    mv.definitions.save({ name = "c", sql = "SELECT 3 AS x" })
    ensure("a", "b", "c")
  end)

  describe("the prompt", function()
    it("proceeds on y", function()
      local r = cli("refresh a", { stdin = "y\n", tty = true })
      assert.are.equal(0, r.code)
      assert.are.equal("refresh 1 materialized view: a\nProceed? [y/N] ", r.err)
      assert.are.same({ "refresh a" }, called(r))
      assert.matches("^%[1/1%] refresh a: success in %d+ ms, 1 row\n$", r.out)
    end)

    it("aborts with exit 3 on n, an empty answer and EOF", function()
      for _, input in ipairs({ "n\n", "\n", "" }) do
        local r = cli("delete a b", { stdin = input, tty = true })
        assert.are.equal(3, r.code)
        assert.matches("^delete 2 materialized views: a, b\nProceed%? %[y/N%] \n?aborted\n$", r.err)
        assert.are.same({}, r.runs)
        assert.are.equal("", r.out)
        assert.is_true(exists("a") and exists("b"))
      end
    end)

    it("refuses at once without a terminal and without --yes, touching nothing", function()
      for _, cmd in ipairs({ "delete a b", "refresh --all", "refresh a --parallel 2", "create a --force",
                             "prune", "apply --prune --definitions " .. H.q(empty_dir()) }) do
        for _, env in ipairs({ {}, { YES = "1" }, { MATVIEWS_YES = "0" } }) do
          local r = cli(cmd, { stdin = "y\n", env = env })
          assert.are.equal(3, r.code, cmd)
          assert.are.equal("refusing without --yes: no terminal to ask on\n", r.err)
          assert.are.equal("", r.out)
          assert.are.same({}, r.runs)
        end
      end
      assert.is_true(exists("a") and exists("b"))
      -- what does not ask does not refuse; a usage error is still one
      assert.are.equal(0, cli("prune --dry-run").code)
      local r = cli("delete nope")
      assert.are.equal(2, r.code)
      assert.are.equal("no definition named nope", H.usage_message(r.err))
    end)

    it("is skipped with --yes or MATVIEWS_YES=1", function()
      drop("a")
      local r = cli("create a --yes")
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      assert.are.same({ "create a" }, called(r))
      drop("a")
      r = cli("create a", { env = { MATVIEWS_YES = "1" } })
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      assert.are.same({ "create a" }, called(r))
      drop("a")
      r = cli("--yes create a")
      assert.are.equal(0, r.code)
      assert.is_true(exists("a"))
    end)
  end)

  describe("options", function()
    it("passes defaults, arguments and env, an argument winning over env", function()
      local function create(args, env)
        drop("a")
        return passed(cli("create a --yes " .. args, { env = env }), "force", "no_data", "row_count_strategy")
      end
      -- no row count given: the definition's (a: exact), else the configuration's (estimated)
      assert.are.same({ force = false, no_data = false, row_count_strategy = "exact" }, create(""))
      assert.are.same({ row_count_strategy = "estimated" }, passed(cli("refresh b --yes"), "row_count_strategy"))
      assert.are.same({ force = true, no_data = true, row_count_strategy = "none" },
        create("--force --no-data --row-count none"))
      assert.are.same({ force = true, no_data = false, row_count_strategy = "none" },
        create("", { MATVIEWS_FORCE = "1", MATVIEWS_ROW_COUNT_STRATEGY = "none" }))
      assert.are.same({ force = false, no_data = false, row_count_strategy = "estimated" },
        create("--no-force --row-count estimated", { MATVIEWS_FORCE = "true", MATVIEWS_ROW_COUNT_STRATEGY = "none" }))
      assert.are.same({ row_count_strategy = "estimated" },
        passed(cli("refresh a --yes", { env = { MATVIEWS_ROW_COUNT_STRATEGY = "estimated" } }), "row_count_strategy"))
      -- the bare names another tool may have exported change nothing
      assert.are.same({ force = false, no_data = false, row_count_strategy = "exact" },
        create("", { FORCE = "1", ROW_COUNT_STRATEGY = "none", CASCADE = "1" }))

      local function delete(args, env)
        ensure("a")
        local r = cli("delete a --yes " .. args, { env = env })
        assert.are.equal(0, r.code)
        return passed(r, "cascade", "if_exists")
      end
      assert.are.same({ cascade = true, if_exists = false }, delete("", { MATVIEWS_CASCADE = "yes" }))
      assert.are.same({ cascade = false, if_exists = true }, delete("--if-exists --no-cascade", { MATVIEWS_CASCADE = "1" }))
      assert.are.same({ cascade = true, if_exists = false }, delete("--cascade", { MATVIEWS_CASCADE = "0" }))
      assert.are.same({ cascade = false, if_exists = false }, delete("", { CASCADE = "1" }))
      ensure("a")
    end)

    it("exits 2 on a bad env value or option, running nothing", function()
      local r = cli("create a --yes", { env = { MATVIEWS_FORCE = "maybe" } })
      assert.are.equal(2, r.code)
      assert.are.equal('MATVIEWS_FORCE must be 1 or 0 (true/false, yes/no), not "maybe"', H.usage_message(r.err))
      r = cli("refresh a --yes", { env = { MATVIEWS_ROW_COUNT_STRATEGY = "all" } })
      assert.are.equal(2, r.code)
      assert.are.equal('MATVIEWS_ROW_COUNT_STRATEGY must be none, estimated or exact, not "all"', H.usage_message(r.err))
      assert.are.same({}, r.runs)
      r = cli("refresh a --yes --row-count all")
      assert.are.equal(2, r.code)
      assert.matches("argument for option '%-%-row%-count' must be one of 'none', 'estimated', 'exact'", r.err)
      r = cli("create a --yes --force --no-force")
      assert.are.equal(2, r.code)
      assert.are.equal("give --force or --no-force, not both", H.usage_message(r.err))
      assert.are.same({}, r.runs)
    end)
  end)

  describe("targets", function()
    it("exits 2 naming an unknown name or id, before running anything", function()
      local r = cli("refresh a nope b --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("no definition named nope", H.usage_message(r.err))
      assert.are.same({}, r.runs)
      r = cli("refresh --id 9999 --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("no definition with id 9999", H.usage_message(r.err))
    end)

    it("exits 2 naming a schema-qualified materialized view without a definition", function()
      mv.exec("CREATE SCHEMA other")
      mv.exec("CREATE MATERIALIZED VIEW other.a AS SELECT 1 AS x")
      local r = cli("delete other.a --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("materialized view other.a exists but has no definition", H.usage_message(r.err))
      assert.are.same({}, r.runs)
      r = cli("refresh public.a --yes")
      assert.are.equal(0, r.code)
      assert.are.same({ "refresh a" }, called(r))
      mv.exec("DROP SCHEMA other CASCADE")
    end)

    it("exits 2 without targets or with several kinds of them", function()
      local r = cli("refresh --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("give view NAMEs, --id N or --all", H.usage_message(r.err))
      r = cli("refresh a --all --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("give view NAMEs, --id N or --all, not several of them", H.usage_message(r.err))
      r = cli("refresh --id x --yes")
      assert.are.equal(2, r.code)
      assert.are.same({}, r.runs)
    end)

    it("takes --id, repeated, and names once each", function()
      local id = mv.definitions.get("b").id
      local r = cli(("refresh --id %d --yes"):format(id))
      assert.are.same({ "refresh b" }, called(r))
      r = cli("refresh b a b --yes")
      assert.are.same({ "refresh b", "refresh a" }, called(r))
    end)
  end)

  describe("--all", function()
    it("runs every definition in dependency order with plain progress lines", function()
      local r = cli("refresh --all --yes")
      assert.are.equal(0, r.code)
      assert.are.same({ "refresh b", "refresh c", "refresh a" }, called(r))
      -- b and c count as configured (estimated: the ANALYZE after the
      -- refresh gives it), a exactly
      assert.matches("^%[1/3%] refresh b: success in %d+ ms, 1 row\n%[2/3%] refresh c: success in %d+ ms, 1 row\n"
        .. "%[3/3%] refresh a: success in %d+ ms, 1 row\n$", r.out)
      assert.are.equal("", r.err)
      r = cli("delete --all --yes")
      assert.are.equal(0, r.code)
      assert.are.same({ "delete a", "delete c", "delete b" }, called(r))
      assert.is_false(exists("a") or exists("b") or exists("c"))
      ensure("a", "b", "c")
    end)

    it("redraws one progress line on a terminal", function()
      local r = H.sh("script -qec " .. H.q("exec " .. H.bin .. " refresh --all --yes") .. " /dev/null")
      assert.are.equal(0, r.code)
      assert.truthy(r.out:find("\r\27[K[0/3] refreshing b  ", 1, true))
      assert.truthy(r.out:find("\r\27[K[2/3] refreshing a  ", 1, true))
      assert.matches("%[3/3%] refresh a: success in %d+ ms, 1 row", r.out)
      assert.matches("3/3 done, 0 failed, %d+", r.out)
    end)

    it("keeps going after a failure and exits 1", function()
      drop("a", "b", "c")
      b_fails(true)
      local r = cli("create --all --yes")
      b_fails(false)
      assert.are.equal(1, r.code)
      assert.are.same({ "create b", "create c", "create a" }, called(r))
      assert.are.same({ "failed", "success", "success" }, { r.runs[1].status, r.runs[2].status, r.runs[3].status })
      assert.matches("^%[1/3%] create b: failed in %d+ ms: division by zero", r.out)
      assert.matches("\n%[3/3%] create a: success in %d+ ms\n$", r.out)
      ensure("b")
    end)
  end)

  describe("--json", function()
    it("prints the runs as one document, before or after the command name", function()
      b_fails(true)
      for _, args in ipairs({ "--json refresh a b --yes", "refresh a b --yes --json" }) do
        local r = cli(args)
        assert.are.equal(1, r.code)
        local doc = cjson.decode(r.out)
        assert.are.equal(2, #doc)
        assert.are.same({ "refresh", "a", "success", 1 }, { doc[1].op, doc[1].view, doc[1].status, doc[1].rows_count })
        assert.are.same({ "b", "failed" }, { doc[2].view, doc[2].status })
        assert.matches("division by zero", doc[2].error)
        assert.are.same({ r.runs[1].name, r.runs[2].name }, { "a", "b" })
      end
      b_fails(false)
    end)

    it("prints queued jobs", function()
      local cfg = H.write(H.tmpfile(".lua"), 'job_adapter = "queue"\n')
      local r = cli("--config " .. H.q(cfg) .. " refresh a --yes --json")
      assert.are.equal(0, r.code)
      local doc = cjson.decode(r.out)
      assert.are.equal("number", type(doc[1].job_id))
      assert.are.same({ { queued = true, job_id = doc[1].job_id, op = "refresh", view = "a" } }, doc)
      assert.are.same({ { op = "refresh", status = 0 } },
        mv.query("SELECT op, status FROM matviews_jobs WHERE id = $1", doc[1].job_id))
      assert.are.same({}, r.runs) -- queued, not run
      r = cli("--config " .. H.q(cfg) .. " refresh a --yes")
      local job = mv.query("SELECT max(id) AS id FROM matviews_jobs")[1].id
      assert.are.equal(("[1/1] refresh a: queued (job %d)\n"):format(job), r.out)
      mv.exec("DELETE FROM matviews_jobs")
    end)

    it("keeps the prompt off stdout", function()
      local r = cli("--json delete a", { stdin = "y\n", tty = true })
      assert.are.equal(0, r.code)
      assert.are.equal("delete", cjson.decode(r.out)[1].op)
      assert.are.same({ "delete a" }, called(r))
      ensure("a")
    end)
  end)
end)

describe("--all without declared dependencies", function()
  setup(function()
    H.fresh_db("cli_ops_graph")
    mv.init()
    mv.exec("CREATE TABLE src (x int)")
    mv.exec("INSERT INTO src SELECT generate_series(1, 4)")
    -- aa_down reads zz_up through a plain view; neither declares anything
    mv.definitions.save({ name = "zz_up", sql = "SELECT x FROM src" })
    mv.definitions.save({ name = "aa_down", sql = "SELECT count(*) AS n FROM v_up" })
    assert.are.equal("success", mv.create("zz_up").status)
    mv.exec("CREATE VIEW v_up AS SELECT x FROM zz_up")
    assert.are.equal("success", mv.create("aa_down").status)
  end)

  it("refreshes what the database says a view reads before the view", function()
    local r = cli("refresh --all --yes")
    assert.are.equal(0, r.code)
    assert.are.same({ "refresh zz_up", "refresh aa_down" }, called(r))
    local first = mv.query([[SELECT d.name FROM mat_view_refresh_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id ORDER BY r.started_at LIMIT 1]])[1].name
    assert.are.equal("zz_up", first)
    assert.matches("^%[1/2%] refresh zz_up: success", r.out)
  end)

  it("deletes the reader first", function()
    local r = cli("delete --all --yes --cascade")
    assert.are.equal(0, r.code)
    assert.are.same({ "delete aa_down", "delete zz_up" }, called(r))
    assert.are.same({ "success", "success" }, { r.runs[1].status, r.runs[2].status })
  end)
end)
