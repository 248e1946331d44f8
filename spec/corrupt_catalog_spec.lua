-- Catalog rows corrupted by hand: a definition row edited with SQL into
-- something matviews never writes (jsonb of the wrong shape, an unknown
-- strategy number, empty SQL, null-ish garbage). Every command that reads
-- definitions answers with an error naming the row (id and name), never a
-- crash or a Lua traceback (`--all` too: the dependency order needs every
-- row); the history reports, which read only ids and names, keep working.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local CORRUPTIONS = {
  { what = "an object where an array belongs", set = [[unique_index_columns = '{"a":1}']],
    reason = [[invalid unique_index_columns: must be a JSON array (got {"a": 1})]] },
  { what = "a string where an array belongs", set = [[unique_index_columns = '"x"']],
    reason = [[invalid unique_index_columns: must be a JSON array (got "x")]] },
  { what = "an unknown strategy number", set = "refresh_strategy = 7",
    reason = "unknown refresh_strategy 7 (0 regular, 1 concurrent, 2 swap)" },
  { what = "empty SQL", set = "sql = ''", reason = "invalid sql: is empty" },
  { what = "blank SQL", set = "sql = ' ;  '",
    reason = "invalid sql: must be a query starting with SELECT, WITH, VALUES or TABLE" },
  { what = "a JSON null for an array", set = "dependencies = 'null'",
    reason = "invalid dependencies: must be a JSON array (got null)" },
  { what = "null entries in indexes", set = "indexes = '[null, 3]'",
    reason = "invalid indexes: each index must be an array of column names" },
  { what = "an array for the options object", set = "options = '[]'",
    reason = "invalid options: must be a JSON object (got [])" },
  { what = "a number in grants' place", set = "grants = '12'",
    reason = "invalid grants: must be a JSON array (got 12)" },
  { what = "an invalid schedule", set = "schedule_cron = '61 * * * *'",
    reason = [[invalid schedule_cron: "61 * * * *": minute: 61 is out of range 0-59]] },
  { what = "an invalid name", set = [[name = 'mv bad;']],
    reason = [[invalid name "mv bad;": is not a simple identifier (letters, digits and underscores, not starting with a digit)]] },
}

-- Commands that read definitions, and so must fail naming the row.
local FAILING = { "list", "refresh mv_bad", "refresh --all", "refresh --all --parallel 2", "create --force mv_bad",
  "delete mv_bad", "validate", "plan --definitions %s", "apply --definitions %s", "deps", "schedule",
  "prune --dry-run" }

describe("a definition row corrupted by hand", function()
  local empty_dir

  setup(function()
    H.fresh_db()
    mv.init()
    P.items()
    empty_dir = H.tmpfile("_defs")
    os.execute("mkdir -p " .. H.q(empty_dir))
  end)

  before_each(function()
    mv.exec("TRUNCATE mat_view_definitions CASCADE") -- runs too: a DELETE keeps them (RESTRICT)
    mv.exec("DROP MATERIALIZED VIEW IF EXISTS mv_bad, mv_good")
    for _, name in ipairs({ "mv_bad", "mv_good" }) do
      mv.definitions.save({ name = name, sql = "SELECT id, v FROM items", unique_index_columns = { "id" } })
      assert.are.equal("success", mv.create(name).status)
    end
  end)

  for _, c in ipairs(CORRUPTIONS) do
    it("(" .. c.what .. ") makes each command that reads definitions name the row", function()
      local id = mv.definitions.get("mv_bad").id
      local name = mv.query("UPDATE mat_view_definitions SET " .. c.set .. " WHERE id = $1 RETURNING name", id)[1].name
      local message = ('definition %d "%s" in mat_view_definitions is corrupt: %s'):format(id, name, c.reason)
      -- a name that is no identifier is refused as typed (exit 2): reach
      -- that row by its id instead
      local target = mv.core.validate_name(name) and H.q(name) or ("--id " .. id)
      for _, cmd in ipairs(FAILING) do
        cmd = cmd:gsub("%%s", H.q(empty_dir)):gsub(" mv_bad$", " " .. target)
        local r = H.mv("--yes " .. cmd)
        local said = r.out .. r.err
        assert.are.equal(1, r.code, cmd .. ": " .. said)
        assert.is_truthy(said:find(message, 1, true), cmd .. " does not name the row: " .. said)
        assert.is_falsy(said:find("traceback", 1, true), cmd .. ": " .. said)
        assert.is_falsy(said:find("%.lua:%d"), cmd .. ": " .. said)
      end
      -- the healthy view is still refreshed by name, and the view of the
      -- corrupt row was not touched
      local r = H.mv("--yes refresh mv_good")
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(5, mv.query("SELECT count(*) AS n FROM mv_bad")[1].n)
      -- the history reports read only ids and names: they keep working
      for _, cmd in ipairs({ "runs", "stats", "metrics" }) do
        r = H.mv(cmd)
        assert.are.equal(0, r.code, cmd .. ": " .. r.err)
        assert.is_truthy(r.out:find("mv_good", 1, true), cmd)
      end
    end)
  end

  it("fails the recorded run of the corrupt view with the message, and the others run", function()
    local id = mv.definitions.get("mv_bad").id
    mv.exec("UPDATE mat_view_definitions SET refresh_strategy = 7 WHERE id = $1", id)
    local r = H.mv("--yes refresh mv_bad mv_good")
    local message = ('definition %d "mv_bad" in mat_view_definitions is corrupt: '
      .. "unknown refresh_strategy 7 (0 regular, 1 concurrent, 2 swap)"):format(id)
    assert.are.equal(1, r.code)
    assert.matches("^%[1/2%] refresh mv_bad: failed in %d+ ms: " .. message:gsub("%p", "%%%0") .. "\n"
      .. "%[2/2%] refresh mv_good: success in %d+ ms, 5 rows\n$", r.out)
    local run = P.runs("refresh", "mv_bad")[1]
    assert.are.same({ status = 3, error = message, strategy = nil },
      { status = run.status, error = run.error, strategy = run.meta.strategy })
    -- from Lua, the same error is raised with the row's id and name
    local ok, e = pcall(mv.definitions.get, "mv_bad")
    assert.is_false(ok)
    assert.are.same({ message = message, definition_id = id, definition = "mv_bad" },
      { message = e.message, definition_id = e.definition_id, definition = e.definition })
  end)
end)
