-- Index declarations (issue 11, item 4): using (gin, hash, brin, ...),
-- expressions, where predicates, include columns, unique and a name; made
-- by apply, compared with pg_get_indexdef normalised so the same index is
-- never drift; one the file no longer declares is dropped by --prune only.
local H = require "spec.helper"
local mv = require "matviews"

local VIEW = [[
view "mv_people" {
  sql = "SELECT id, email, tags, doc, active, created FROM people",
  strategy = "concurrent", unique = { "id" },
  indexes = {
    { "tags", using = "gin" },
    { "doc", using = "gin", name = "mv_people_doc_gin" },
    { "(lower(email))", unique = true, where = "active" },
    { "created", using = "brin" },
    { "email", using = "hash" },
    { "active", include = { "email" } },
  },
}
]]

-- The index definitions of mv_people, by name.
local function indexdefs()
  local out = {}
  for _, r in ipairs(mv.query([[SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'mv_people' ORDER BY 1]])) do
    out[r.indexname] = r.indexdef
  end
  return out
end

describe("index declarations", function()
  local dir

  setup(function()
    H.fresh_db()
    mv.exec([[CREATE TABLE people (id int PRIMARY KEY, email text, tags text[], doc jsonb, active boolean,
      created timestamptz)]])
    mv.exec([[INSERT INTO people SELECT g, 'U' || g || '@x', ARRAY['t' || (g % 3)], jsonb_build_object('g', g),
      g % 2 = 0, now() FROM generate_series(1, 20) g]])
    dir = H.defs_dir({ ["p.lua"] = VIEW })
  end)

  it("creates gin, hash, brin, expression, partial and covering indexes under their names", function()
    local r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.out .. r.err)
    local ix = indexdefs()
    assert.matches("USING gin %(tags%)", ix.mv_people_tags_idx)
    assert.matches("USING gin %(doc%)", ix.mv_people_doc_gin)
    assert.matches("CREATE UNIQUE INDEX mv_people_lower_email_key .* USING btree %(lower%(email%)%) WHERE active",
      ix.mv_people_lower_email_key)
    assert.matches("USING brin %(created%)", ix.mv_people_created_idx)
    assert.matches("USING hash %(email%)", ix.mv_people_email_idx)
    assert.matches("USING btree %(active%) INCLUDE %(email%)", ix.mv_people_active_idx)
  end)

  it("never reports them as drift: plan in sync, apply does nothing", function()
    local r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.same({ 0, "in sync\n" }, { r.code, r.out })
    r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.same({ 0, "nothing to do\n" }, { r.code, r.out })
  end)

  it("adds a newly declared index; leaves a removed one until --prune, which drops it", function()
    H.write(dir .. "/p.lua", (VIEW:gsub('    { "email", using = "hash" },\n', '    { "(email || id::text)" },\n')))
    local r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.equal(1, r.code, r.err)
    assert.are.equal("save mv_people (indexes)\nindex add mv_people_email_id_text_idx on mv_people\n"
      .. "note: index mv_people_email_idx on mv_people is not declared (apply --prune drops it)\ndrift: 2 actions\n", r.out)
    assert.are.equal(0, H.mv("apply --definitions " .. H.q(dir)).code)
    r = H.mv("plan --definitions " .. H.q(dir))
    assert.are.same({ 0 }, { r.code })
    r = H.mv("--yes apply --prune --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.err)
    assert.matches("index drop mv_people_email_idx on mv_people: done", r.out, 1, true)
    assert.is_nil(indexdefs().mv_people_email_idx)
    r = H.mv("plan --prune --definitions " .. H.q(dir))
    assert.are.same({ 0, "in sync\n" }, { r.code, r.out })
  end)

  it("refuses an unknown method and an index on a column the view lacks, naming file and line", function()
    local bad = H.defs_dir({ ["b.lua"] = 'view "mv_b" {\n  sql = "SELECT 1 AS a",\n  indexes = { { "a", using = "rtree" } },\n}\n' })
    local r = H.mv("plan --definitions " .. H.q(bad))
    assert.are.equal(2, r.code)
    assert.matches("b.lua:3: view 'mv_b': key 'indexes' must be an array of indexes (index 1: using must be one of btree, hash, gin, gist, brin, spgist)", r.err, 1, true)
    bad = H.defs_dir({ ["b.lua"] = 'view "mv_b" {\n  sql = "SELECT 1 AS a",\n  indexes = { { "zz" } },\n}\n' })
    r = H.mv("apply --definitions " .. H.q(bad))
    assert.are.equal(2, r.code)
    assert.matches("b.lua:3: view 'mv_b': index mv_b_zz_idx: column \"zz\" does not exist", r.err, 1, true)
    assert.are.equal(0, #mv.query("SELECT 1 FROM pg_matviews WHERE matviewname = 'mv_b'"))
  end)
end)
