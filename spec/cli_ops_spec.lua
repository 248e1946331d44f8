-- The create, refresh and delete commands as a command line: targets
-- (NAME..., schema-qualified, --id, --all), the prompt, options over env,
-- progress lines, --json and exit codes. The jobs are a stand-in here
-- (spec/fixtures/cli_stub_jobs.lua) so what the command passes them is
-- visible; cli_jobs_spec.lua runs the same commands with the real jobs.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local STUB = "spec/fixtures/cli_stub_jobs.lua"
local log

-- Runs the CLI over the stand-in jobs; returns the result and the job calls.
local function cli(args, opts)
  opts = opts or {}
  opts.env = opts.env or {}
  os.remove(log)
  opts.env.STUB_JOBS_LOG = log
  local r = H.mv(STUB .. " " .. args, opts)
  r.calls = {}
  local f = io.open(log, "r")
  if f then
    for line in f:lines() do r.calls[#r.calls + 1] = cjson.decode(line) end
    f:close()
  end
  return r
end

-- "op name" of each call.
local function called(r)
  local t = {}
  for i, c in ipairs(r.calls) do t[i] = c.op .. " " .. c.name end
  return t
end

describe("create, refresh and delete", function()
  setup(function()
    H.fresh_db()
    log = H.tmpfile(".log")
    mv.init()
    -- c depends on a: --all runs a before c (and delete c before a)
    mv.exec([[INSERT INTO mat_view_definitions (name, sql, dependencies) VALUES
      ('c', 'SELECT 3', '["a"]'), ('a', 'SELECT 1', '[]'), ('b', 'SELECT 2', '[]')]])
  end)

  describe("the prompt", function()
    it("proceeds on y", function()
      local r = cli("refresh a", { stdin = "y\n" })
      assert.are.equal(0, r.code)
      assert.are.equal("refresh 1 materialized view: a\nProceed? [y/N] ", r.err)
      assert.are.same({ "refresh a" }, called(r))
    end)

    it("aborts with exit 3 on n, an empty answer and EOF", function()
      for _, input in ipairs({ "n\n", "\n", false }) do
        local r = cli("delete a b", { stdin = input or nil })
        assert.are.equal(3, r.code)
        assert.matches("^delete 2 materialized views: a, b\nProceed%? %[y/N%] \n?aborted\n$", r.err)
        assert.are.same({}, r.calls)
        assert.are.equal("", r.out)
      end
    end)

    it("is skipped with --yes or YES=1", function()
      local r = cli("create a --yes")
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      r = cli("create a", { env = { YES = "1" } })
      assert.are.equal(0, r.code)
      assert.are.equal("", r.err)
      assert.are.same({ "create a" }, called(r))
      r = cli("--yes create a")
      assert.are.equal(0, r.code)
    end)
  end)

  describe("options", function()
    it("passes defaults, arguments and env, an argument winning over env", function()
      local r = cli("create a --yes")
      assert.are.same({ force = false, no_data = false }, r.calls[1].opts) -- row count: the job's default
      r = cli("refresh a --yes")
      assert.are.same({}, r.calls[1].opts)
      r = cli("create a --yes --force --no-data --row-count exact")
      assert.are.same({ force = true, no_data = true, row_count_strategy = "exact" }, r.calls[1].opts)
      r = cli("create a --yes", { env = { FORCE = "1", ROW_COUNT_STRATEGY = "none" } })
      assert.are.same({ force = true, no_data = false, row_count_strategy = "none" }, r.calls[1].opts)
      r = cli("create a --yes --no-force --row-count exact", { env = { FORCE = "true", ROW_COUNT_STRATEGY = "none" } })
      assert.are.same({ force = false, no_data = false, row_count_strategy = "exact" }, r.calls[1].opts)
      r = cli("refresh a --yes", { env = { ROW_COUNT_STRATEGY = "exact" } })
      assert.are.same({ row_count_strategy = "exact" }, r.calls[1].opts)
      r = cli("delete a --yes", { env = { CASCADE = "yes" } })
      assert.are.same({ cascade = true, if_exists = false }, r.calls[1].opts)
      r = cli("delete a --yes --if-exists --no-cascade", { env = { CASCADE = "1" } })
      assert.are.same({ cascade = false, if_exists = true }, r.calls[1].opts)
      r = cli("delete a --yes --cascade", { env = { CASCADE = "0" } })
      assert.are.same({ cascade = true, if_exists = false }, r.calls[1].opts)
    end)

    it("exits 2 on a bad env value or option", function()
      local r = cli("create a --yes", { env = { FORCE = "maybe" } })
      assert.are.equal(2, r.code)
      assert.are.equal('FORCE must be 1 or 0 (true/false, yes/no), not "maybe"', H.usage_message(r.err))
      r = cli("refresh a --yes", { env = { ROW_COUNT_STRATEGY = "all" } })
      assert.are.equal(2, r.code)
      assert.are.equal('ROW_COUNT_STRATEGY must be none, estimated or exact, not "all"', H.usage_message(r.err))
      r = cli("refresh a --yes --row-count all")
      assert.are.equal(2, r.code)
      assert.matches("argument for option '%-%-row%-count' must be one of 'none', 'estimated', 'exact'", r.err)
      r = cli("create a --yes --force --no-force")
      assert.are.equal(2, r.code)
      assert.are.equal("give --force or --no-force, not both", H.usage_message(r.err))
      assert.are.same({}, r.calls)
    end)
  end)

  describe("targets", function()
    it("exits 2 naming an unknown name or id, before running anything", function()
      local r = cli("refresh a nope b --yes")
      assert.are.equal(2, r.code)
      assert.are.equal("no definition named nope", H.usage_message(r.err))
      assert.are.same({}, r.calls)
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
      assert.are.same({}, r.calls)
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
    end)

    it("takes --id, repeated, and names once each", function()
      local id = mv.query("SELECT id FROM mat_view_definitions WHERE name = 'b'")[1].id
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
      assert.are.same({ "refresh a", "refresh b", "refresh c" }, called(r))
      assert.are.equal("[1/3] refresh a: success in 5 ms, 3 rows\n[2/3] refresh b: success in 5 ms, 3 rows\n"
        .. "[3/3] refresh c: success in 5 ms, 3 rows\n", r.out)
      assert.are.equal("", r.err)
      r = cli("delete --all --yes")
      assert.are.same({ "delete c", "delete b", "delete a" }, called(r))
    end)

    it("redraws one progress line on a terminal", function()
      if os.execute("script -qec true /dev/null >/dev/null 2>&1") ~= true then
        pending("no script(1) to run under a terminal")
        return
      end
      local r = H.sh("script -qec " .. H.q(H.bin .. " " .. STUB .. " refresh --all --yes") .. " /dev/null")
      assert.are.equal(0, r.code)
      assert.truthy(r.out:find("\r\27[K[0/3] refreshing a  ", 1, true))
      assert.truthy(r.out:find("\r\27[K[2/3] refreshing c  ", 1, true))
      assert.truthy(r.out:find("[3/3] refresh c: success in 5 ms, 3 rows", 1, true))
      assert.matches("3/3 done, 0 failed, %d+", r.out)
    end)

    it("keeps going after a failure and exits 1", function()
      local r = cli("create --all --yes", { env = { STUB_JOBS_FAIL = "b" } })
      assert.are.equal(1, r.code)
      assert.are.same({ "create a", "create b", "create c" }, called(r))
      assert.matches("%[2/3%] create b: failed in 2 ms: boom b\n", r.out)
    end)
  end)

  describe("--json", function()
    it("prints the runs as one document, before or after the command name", function()
      for _, args in ipairs({ "--json refresh a b --yes", "refresh a b --yes --json" }) do
        local r = cli(args, { env = { STUB_JOBS_FAIL = "b" } })
        assert.are.equal(1, r.code)
        local doc = cjson.decode(r.out)
        assert.are.equal(2, #doc)
        assert.are.same({ "public.a", "success", 3 }, { doc[1].view, doc[1].status, doc[1].rows_count })
        assert.are.same({ "public.b", "failed", "boom b" }, { doc[2].view, doc[2].status, doc[2].error })
      end
    end)

    it("prints queued jobs", function()
      local r = cli("refresh a --yes --json", { env = { STUB_JOBS_QUEUE = "1" } })
      assert.are.equal(0, r.code)
      assert.are.same({ { queued = true, job_id = 7 } }, cjson.decode(r.out))
      r = cli("refresh a --yes", { env = { STUB_JOBS_QUEUE = "1" } })
      assert.are.equal("[1/1] refresh a: queued (job 7)\n", r.out)
    end)

    it("keeps the prompt off stdout", function()
      local r = cli("--json delete a", { stdin = "y\n" })
      assert.are.equal(0, r.code)
      assert.are.equal("delete", cjson.decode(r.out)[1].op)
    end)
  end)
end)
