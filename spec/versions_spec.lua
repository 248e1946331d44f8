-- Versions (issue 11, item 5): every change of a definition is a version
-- with number, checksum, when and who; `history` lists them with a diff of
-- the SQL; `rollback NAME --to N` makes N current and deploys it through
-- the replace; deleting a definition keeps its runs.
local H = require "spec.helper"
local mv = require "matviews"

local function file(sql, extra)
  return ('view "mv_h" { sql = %q%s }\nview "mv_reader" { sql = "SELECT n FROM mv_h" }\n'):format(sql, extra or "")
end

describe("definition versions", function()
  local dir

  setup(function()
    H.fresh_db()
    dir = H.defs_dir({ ["h.lua"] = file("SELECT g AS n\nFROM generate_series(1, 3) g") })
    assert.are.equal(0, H.mv("apply --definitions " .. H.q(dir)).code)
    H.write(dir .. "/h.lua", file("SELECT g AS n, g * 2 AS twice\nFROM generate_series(1, 4) g"))
    assert.are.equal(0, H.mv("apply --definitions " .. H.q(dir)).code)
    H.write(dir .. "/h.lua", file("SELECT g AS n, g * 2 AS twice\nFROM generate_series(1, 4) g", ', schedule = "@daily"'))
    assert.are.equal(0, H.mv("apply --definitions " .. H.q(dir)).code)
  end)

  it("keeps each change as a version with checksum, time and database user", function()
    local rows = mv.query([[SELECT v.version, v.checksum, v.created_by, v.schedule_cron FROM mat_view_definition_versions v
      JOIN mat_view_definitions d ON d.id = v.mat_view_definition_id WHERE d.name = 'mv_h' ORDER BY v.version]])
    assert.are.equal(3, #rows)
    assert.are.same({ 1, 2, 3 }, { rows[1].version, rows[2].version, rows[3].version })
    assert.are.equal(mv.query("SELECT current_user AS u")[1].u, rows[3].created_by)
    assert.are.equal("@daily", rows[3].schedule_cron)
    assert.are_not.equal(rows[1].checksum, rows[2].checksum)
  end)

  it("lists them with what changed and a diff of the SQL", function()
    local r = H.mv("history mv_h")
    assert.are.equal(0, r.code, r.err)
    local user = mv.query("SELECT current_user AS u")[1].u
    local text = r.out:gsub("%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d[%+%-]%d%d:%d%d", "T"):gsub("  " .. user .. "  ", "  U  ")
    assert.are.equal([[
version 1  T  U  created
version 2  T  U  sql
    - SELECT g AS n
    - FROM generate_series(1, 3) g
    + SELECT g AS n, g * 2 AS twice
    + FROM generate_series(1, 4) g
version 3  T  U  schedule_cron
]], text)
  end)

  it("rolls back to version 1 through the replace, rebuilding the reader", function()
    local r = H.mv("rollback mv_h --to 1")
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.matches("replace mv_h: SQL changed, columns removed: twice: done", r.out, 1, true)
    assert.are.equal(3, mv.query("SELECT count(*)::int AS n FROM mv_h")[1].n)
    assert.are.equal(3, mv.query("SELECT count(*)::int AS n FROM mv_reader")[1].n)
    local v = mv.query([[SELECT v.version, v.checksum FROM mat_view_definition_versions v
      JOIN mat_view_definitions d ON d.id = v.mat_view_definition_id WHERE d.name = 'mv_h' ORDER BY v.version]])
    assert.are.equal(4, #v)
    assert.are.equal(v[1].checksum, v[4].checksum)
    local run = mv.query([[SELECT r.meta->>'replaced' AS replaced FROM mat_view_create_runs r
      JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE d.name = 'mv_h' ORDER BY r.id DESC LIMIT 1]])[1]
    assert.are.equal("true", run.replaced)
    assert.are.equal(2, H.mv("rollback mv_h --to 9").code)
  end)

  it("refuses a rollback whose SQL drops a column a dependent reads, changing nothing", function()
    assert.are.equal(0, H.mv("apply --definitions " .. H.q(dir)).code) -- back to the file (twice)
    mv.exec("CREATE VIEW v_twice AS SELECT twice FROM mv_h")
    local before = mv.query("SELECT count(*)::int AS n FROM mat_view_definition_versions")[1].n
    local r = H.mv("rollback mv_h --to 1")
    assert.are.equal(2, r.code)
    assert.matches("dependent public.v_twice reads column twice, which the new SQL drops", r.err, 1, true)
    assert.are.equal(before, mv.query("SELECT count(*)::int AS n FROM mat_view_definition_versions")[1].n)
    assert.are.equal(4, mv.query("SELECT count(*)::int AS n FROM v_twice")[1].n)
  end)

  it("keeps the runs of a deleted definition; a DELETE by hand cannot erase them", function()
    local id = mv.definitions.get("mv_reader").id
    local runs = mv.query("SELECT count(*)::int AS n FROM mat_view_create_runs WHERE mat_view_definition_id = $1", id)[1].n
    assert.is_true(runs > 0)
    assert.is_true(mv.definitions.delete("mv_reader"))
    assert.is_nil(mv.definitions.get("mv_reader"))
    assert.are.equal(runs, mv.query("SELECT count(*)::int AS n FROM mat_view_create_runs WHERE mat_view_definition_id = $1", id)[1].n)
    assert.are.equal(1, #mv.runs({ op = "create", limit = 100 }) > 0 and 1 or 0)
    local ok, e = pcall(mv.exec, "DELETE FROM mat_view_definitions WHERE id = $1", id)
    assert.is_false(ok)
    assert.are.equal("23503", e.sqlstate)
    -- saving it again brings the row back with its history
    H.write(dir .. "/h.lua", file("SELECT g AS n, g * 2 AS twice\nFROM generate_series(1, 4) g", ', schedule = "@daily"'))
    assert.are.equal(0, H.mv("apply --catalog-only --definitions " .. H.q(dir)).code)
    assert.are.equal(id, mv.definitions.get("mv_reader").id)
  end)
end)
