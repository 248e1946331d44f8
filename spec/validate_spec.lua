-- `matviews validate`: timings of a view against its SQL, and the contents
-- compared in the database as multisets (a stale value or a changed count
-- of duplicates is a mismatch even when the row counts agree).
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- Saves a definition row directly in the catalog.
local function define(name, sql)
  mv.exec([[INSERT INTO mat_view_definitions (name, sql) VALUES ($1, $2)
            ON CONFLICT (schema_name, name) DO UPDATE SET sql = excluded.sql]], name, sql)
end

local function split(line)
  local out = {}
  for cell in (line .. ","):gmatch("([^,]*),") do out[#out + 1] = cell end
  return out
end

describe("matviews validate", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, price numeric(8,2) NOT NULL)")
    mv.exec("INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 200) g")
    mv.exec("CREATE TABLE tags (tag text NOT NULL)")
    mv.exec("INSERT INTO tags VALUES ('a'), ('a'), ('b')")
    define("mv_items", "SELECT id, label, price FROM items;")
    define("mv_tags", "SELECT tag FROM tags")
    define("mv_never_created", "SELECT 1 AS x")
    mv.exec("CREATE MATERIALIZED VIEW mv_items AS SELECT id, label, price FROM items")
    mv.exec("CREATE MATERIALIZED VIEW mv_tags AS SELECT tag FROM tags")
  end)

  it("reports a fresh view as match with both row counts and exits 0", function()
    local r = H.mv("validate mv_items --iterations 2 --warmup 0")
    assert.are.equal(0, r.code, r.err)
    assert.matches("^view%s+iter%s+baseline ms min|avg|max%s+mv ms min|avg|max%s+speedup%s+rows baseline%s+rows mv%s+contents\n", r.out)
    assert.matches("public%.mv_items%s+2%s+[%d.]+ | [%d.]+ | [%d.]+%s+[%d.]+ | [%d.]+ | [%d.]+%s+[%d.]+x%s+200%s+200%s+match\n", r.out)
    local doc = cjson.decode(H.mv("validate mv_items --iterations 1 --json").out)
    local v = doc.results[1]
    assert.are.same({ "public.mv_items", 1, 200, 200, "match", 0 },
      { v.view, v.iterations, v.rows_baseline, v.rows_mv, v.contents, v.differing_rows })
    assert.is_true(v.baseline_min_ms <= v.baseline_avg_ms and v.baseline_avg_ms <= v.baseline_max_ms)
    assert.is_true(v.mv_min_ms <= v.mv_avg_ms and v.mv_avg_ms <= v.mv_max_ms)
    -- JSON keeps 14 significant digits
    assert.is_true(math.abs(v.baseline_avg_ms / v.mv_avg_ms - v.speedup_avg) < 1e-9 * v.speedup_avg)
  end)

  it("finds a stale view with the same row count and one changed value, exit 1", function()
    mv.exec("UPDATE items SET price = price + 1 WHERE id = 7")
    local r = H.mv("validate mv_items --iterations 1")
    assert.are.equal(1, r.code)
    assert.matches("200%s+200%s+mismatch %(2 rows%)\n", r.out)
    local doc = cjson.decode(H.mv("validate mv_items --iterations 1 --json").out)
    local v = doc.results[1]
    assert.are.same({ "mismatch", 2, 1, 1, 200, 200 },
      { v.contents, v.differing_rows, v.missing_rows, v.extra_rows, v.rows_baseline, v.rows_mv })
    assert.are.equal(1, doc.mismatches)
    mv.exec("REFRESH MATERIALIZED VIEW mv_items")
    assert.are.equal(0, H.mv("validate mv_items --iterations 1").code)
  end)

  it("compares multisets: the same set with other duplicate counts is a mismatch", function()
    assert.are.equal(0, H.mv("validate mv_tags --iterations 1").code)
    -- {a, a, b} becomes {a, b, b}: same rows as a set, same count, other multiset
    mv.exec("DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags WHERE tag = 'a')")
    mv.exec("INSERT INTO tags VALUES ('b')")
    local doc = cjson.decode(H.mv("validate mv_tags --iterations 1 --json").out)
    local v = doc.results[1]
    assert.are.same({ "mismatch", 2, 3, 3 }, { v.contents, v.differing_rows, v.rows_baseline, v.rows_mv })
    assert.are.equal(1, H.mv("validate mv_tags --iterations 1").code)
    mv.exec("REFRESH MATERIALIZED VIEW mv_tags")
  end)

  it("writes the CSV columns and values", function()
    local path = H.tmpfile(".csv")
    local r = H.mv("validate mv_items mv_tags --iterations 3 --warmup 1 --csv " .. H.q(path))
    assert.are.equal(0, r.code, r.err)
    local lines = {}
    for l in H.slurp(path):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines)
    assert.are.equal("view,iterations,baseline_avg_ms,baseline_min_ms,baseline_max_ms,mv_avg_ms,mv_min_ms,"
      .. "mv_max_ms,speedup_avg,rows_baseline,rows_mv,contents,differing_rows", lines[1])
    local rows = {}
    for i = 2, 3 do local c = split(lines[i]); rows[c[1]] = c end
    local c = rows["public.mv_items"]
    assert.are.same({ "3", "200", "200", "match", "0" }, { c[2], c[10], c[11], c[12], c[13] })
    for i = 3, 9 do assert.matches("^%d+%.%d+$", c[i]) end
    assert.is_true(tonumber(c[4]) <= tonumber(c[3]) and tonumber(c[3]) <= tonumber(c[5]))
    -- speedup = baseline avg / mv avg (the cells are rounded to 3 and 2 decimals)
    local b, m = tonumber(c[3]), tonumber(c[6])
    local lo, hi = (b - 0.0005) / (m + 0.0005) - 0.005, (b + 0.0005) / math.max(m - 0.0005, 1e-9) + 0.005
    assert.is_true(tonumber(c[9]) >= lo and tonumber(c[9]) <= hi, c[9] .. " not in " .. lo .. ".." .. hi)
    assert.are.same({ "3", "3", "3", "match", "0" }, { rows["public.mv_tags"][2], rows["public.mv_tags"][10],
      rows["public.mv_tags"][11], rows["public.mv_tags"][12], rows["public.mv_tags"][13] })
  end)

  it("skips definitions without a view, and fails on a named one or an unknown name", function()
    local r = H.mv("validate --iterations 1")
    assert.are.equal(0, r.code, r.err)
    assert.matches("skipped mv_never_created: view does not exist or is not populated", r.err)
    assert.matches("public%.mv_items", r.out)
    assert.matches("public%.mv_tags", r.out)
    r = H.mv("validate mv_never_created")
    assert.are.equal(1, r.code)
    r = H.mv("validate nope")
    assert.are.equal(2, r.code)
    assert.are.equal("no definition named nope", H.usage_message(r.err))
  end)

  it("refuses a zero iteration count as a usage error", function()
    local r = H.mv("validate --iterations 0")
    assert.are.equal(2, r.code)
    assert.matches("expected a whole number >= 1, got '0'", r.err)
  end)
end)
