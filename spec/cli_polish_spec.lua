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
