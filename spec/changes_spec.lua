-- Skip-unchanged refresh: refresh --if-changed and refresh_when = "changed"
-- skip a view (a success with meta.skipped = "unchanged") only when no
-- committed transaction changed a table it reads, directly or through plain
-- views and materialized views, since the snapshot of its last refresh.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function refresh(name, args)
  local r = H.mv("refresh " .. name .. " --yes --json " .. (args or ""))
  assert.are.equal(0, r.code, r.err .. r.out)
  return cjson.decode(r.out)[1]
end

local function skipped(name, args)
  local run = refresh(name, "--if-changed " .. (args or ""))
  return run.meta.skipped == "unchanged"
end

-- Every block runs twice: with the C trigger of the extension
-- matviews_changes (make test installs it on the server; apply creates it),
-- and with the PL/pgSQL one (change_trigger = "plpgsql").
local MODES = {
  { name = "C", fn = "matviews_note_change_c", config = "" },
  { name = "PL/pgSQL", fn = "matviews_note_change", config = 'change_trigger = "plpgsql"\n' },
}
-- apply with a configuration file of text config
local function apply_config(config, args)
  local cfg = H.tmpfile(".lua")
  H.write(cfg, config)
  return H.mv("--config " .. H.q(cfg) .. " apply " .. args)
end
-- the function of the change trigger on table t
local function trigger_of(t)
  local r = mv.query("SELECT tgfoid::regproc::text AS f FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'matviews_track_changes'", t)
  return r[1] and r[1].f
end

for _, mode in ipairs(MODES) do
  local function apply(args) return apply_config(mode.config, args) end

  describe("refresh --if-changed (" .. mode.name .. " trigger)", function()
    local dir
    setup(function()
      H.fresh_db("changes_" .. (mode.name == "C" and "c" or "plpgsql"))
      mv.init()
      mv.exec("CREATE TABLE ch_base (id int PRIMARY KEY, v int)")
      mv.exec("INSERT INTO ch_base SELECT g, g FROM generate_series(1, 10) g")
      mv.exec("CREATE TABLE ch_other (id int)")
      -- top reads mid (a materialized view) through a plain view; mid reads ch_base
      mv.exec("CREATE VIEW ch_plain AS SELECT id, v FROM ch_base")
      dir = H.tmpfile("_defs")
      assert(os.execute("mkdir -p " .. H.q(dir)))
      local first = [[
  view "ch_mid" { sql = "SELECT id, v FROM ch_plain", refresh_when = "changed" }
  view "ch_direct" { sql = "SELECT count(*) AS n FROM ch_base", refresh_when = "changed" }
  view "ch_plain_only" { sql = "SELECT count(*) AS n FROM ch_other" }
  ]]
      H.write(dir .. "/v.lua", first)
      local r = apply("--definitions " .. H.q(dir))
      assert.are.equal(0, r.code, r.err .. r.out)
      assert.matches("tracking changes of public.ch_base\n", r.out)
      assert.matches("change trigger: " .. mode.name:gsub("/", "%%/") .. " %(", r.out)
      assert.are.equal(mode.fn, trigger_of("ch_base"))
      -- ch_top reads ch_mid (a materialized view) through a plain view
      mv.exec("CREATE VIEW ch_mid_v AS SELECT id, v FROM ch_mid")
      H.write(dir .. "/v.lua", first .. [[
  view "ch_top" { sql = "SELECT sum(v) AS total FROM ch_mid_v", refresh_when = "changed", depends_on = { "ch_mid" } }
  ]])
      r = apply("--definitions " .. H.q(dir))
      assert.are.equal(0, r.code, r.err .. r.out)
      assert.matches("tracking changes of %(event trigger%) matviews_track_matviews\n", r.out)
    end)

    it("installs statement triggers on the base tables, and skips an unchanged view", function()
      assert.are.same({ { tgname = "matviews_track_changes" } },
        mv.query("SELECT tgname FROM pg_trigger WHERE tgrelid = 'ch_base'::regclass AND NOT tgisinternal"))
      assert.is_false(skipped("ch_direct")) -- tracking began after its create's snapshot
      assert.is_true(skipped("ch_direct"))
      local r = H.mv("refresh ch_direct --if-changed --yes")
      assert.matches("refresh ch_direct: skipped: no source changed since the last refresh", r.out)
    end)

    it("refreshes a view after a change two levels below (through a plain view and a materialized view)", function()
      refresh("ch_mid"); refresh("ch_top")
      assert.is_true(skipped("ch_top"))
      mv.exec("UPDATE ch_base SET v = v + 1 WHERE id = 1")
      assert.is_false(skipped("ch_mid"))   -- ch_mid reads ch_base through ch_plain
      assert.is_false(skipped("ch_top"))   -- ch_mid was refreshed since ch_top's snapshot
      assert.are.same({ { total = 56 } }, mv.query("SELECT total FROM ch_top"))
      assert.is_true(skipped("ch_top"))
    end)

    it("is not forced by a change that rolled back", function()
      refresh("ch_direct")
      assert.is_true(skipped("ch_direct"))
      pcall(mv.transaction, function(c)
        c:exec("INSERT INTO ch_base VALUES (100, 100)")
        error("roll back")
      end)
      assert.is_true(skipped("ch_direct"))
    end)

    it("never misses a committed change with two writers in flight", function()
      assert.is_true(skipped("ch_direct"))
      local w1 <close> = mv.connect("dbname=" .. H.dbname)
      local w2 <close> = mv.connect("dbname=" .. H.dbname)
      w1:exec("BEGIN"); w1:exec("INSERT INTO ch_base VALUES (201, 1)")
      w2:exec("BEGIN"); w2:exec("INSERT INTO ch_base VALUES (202, 1)")
      -- both in flight: nothing committed, the refresh may be skipped
      assert.is_true(skipped("ch_direct"))
      w1:exec("COMMIT")
      assert.is_false(skipped("ch_direct")) -- w1's change is seen
      assert.are.same({ { n = 11 } }, mv.query("SELECT n FROM ch_direct"))
      w2:exec("COMMIT")
      assert.is_false(skipped("ch_direct")) -- and w2's, committed after that refresh began
      assert.are.same({ { n = 12 } }, mv.query("SELECT n FROM ch_direct"))
      assert.is_true(skipped("ch_direct"))
    end)

    it("never skips a view whose tracking is missing", function()
      refresh("ch_plain_only")
      assert.is_false(skipped("ch_plain_only")) -- ch_other has no trigger
      assert.is_false(skipped("ch_plain_only"))
      -- a trigger disabled, or dropped (its tracked_relations row left behind)
      refresh("ch_direct")
      assert.is_true(skipped("ch_direct"))
      mv.exec("ALTER TABLE ch_base DISABLE TRIGGER matviews_track_changes")
      assert.is_false(skipped("ch_direct"))
      mv.exec("ALTER TABLE ch_base ENABLE TRIGGER matviews_track_changes") -- not ALWAYS: still not trusted
      assert.is_false(skipped("ch_direct"))
      mv.exec("DROP TRIGGER matviews_track_changes ON ch_base")
      assert.is_false(skipped("ch_direct"))
      assert.is_false(skipped("ch_direct"))
    end)

    it("records a change made under session_replication_role = replica (logical replication's apply)", function()
      assert.are.equal(0, apply("--definitions " .. H.q(dir)).code) -- reinstalls the trigger, ENABLE ALWAYS
      assert.are.same({ { e = "A" } }, mv.query([[SELECT tgenabled::text AS e FROM pg_trigger
        WHERE tgrelid = 'ch_base'::regclass AND tgname = 'matviews_track_changes']]))
      refresh("ch_direct")
      assert.is_true(skipped("ch_direct"))
      local w <close> = mv.connect("dbname=" .. H.dbname)
      w:exec("SET session_replication_role = replica")
      w:exec("INSERT INTO ch_base VALUES (400, 1)")
      assert.is_false(skipped("ch_direct"))
      assert.is_true(skipped("ch_direct"))
    end)

    it("follows refresh_when = \"changed\" without --if-changed", function()
      assert.are.equal(0, apply("--definitions " .. H.q(dir)).code) -- reinstalls the trigger
      refresh("ch_direct")
      assert.are.equal("unchanged", refresh("ch_direct").meta.skipped)
      assert.is_nil(refresh("ch_plain_only").meta.skipped)
      assert.is_nil(refresh("ch_direct", "--no-if-changed").meta.skipped)
      -- the forced refresh is the next one's baseline
      assert.are.equal("unchanged", refresh("ch_direct").meta.skipped)
    end)

    it("prune deletes the change rows every baseline already sees", function()
      mv.exec("UPDATE ch_base SET v = v + 1 WHERE id = 2")
      assert.is_true(mv.query("SELECT count(*)::int AS n FROM matviews_table_changes")[1].n > 0)
      for _, v in ipairs({ "ch_mid", "ch_top", "ch_direct", "ch_plain_only" }) do refresh(v) end
      local r = H.mv("prune --yes --json")
      assert.are.equal(0, r.code, r.err)
      assert.is_true(cjson.decode(r.out).changes_pruned > 0)
      -- the update's row is gone (the refreshes' own rows are newer than some baseline)
      assert.are.equal(0, mv.query("SELECT count(*)::int AS n FROM matviews_table_changes WHERE relid = 'ch_base'::regclass")[1].n)
      assert.is_true(skipped("ch_direct"))
      mv.exec("INSERT INTO ch_base VALUES (300, 1)")
      assert.is_false(skipped("ch_direct"))
    end)
  end)

  describe("refresh --if-changed over table trees (" .. mode.name .. " trigger)", function()
    setup(function()
      H.fresh_db("changes_tree_" .. (mode.name == "C" and "c" or "plpgsql"))
      mv.init()
      mv.exec("CREATE TABLE ct_parent (id int)")
      mv.exec("CREATE TABLE ct_child () INHERITS (ct_parent)")
      mv.exec("CREATE TABLE ct_part (id int) PARTITION BY RANGE (id)")
      mv.exec("CREATE TABLE ct_mid PARTITION OF ct_part FOR VALUES FROM (0) TO (100) PARTITION BY RANGE (id)")
      mv.exec("CREATE TABLE ct_leaf PARTITION OF ct_mid FOR VALUES FROM (0) TO (100)")
      local dir = H.defs_dir({ ["v.lua"] = [[
  view "ct_v" { sql = "SELECT (SELECT count(*) FROM ct_parent) AS a, (SELECT count(*) FROM ct_part) AS b", refresh_when = "changed" }
  ]] })
      local r = apply("--definitions " .. H.q(dir))
      assert.are.equal(0, r.code, r.err .. r.out)
      for _, t in ipairs({ "ct_parent", "ct_child", "ct_part", "ct_mid", "ct_leaf" }) do
        assert.matches("tracking changes of public." .. t .. "\n", r.out)
        assert.are.equal(mode.fn, trigger_of(t))
      end
      refresh("ct_v")
    end)

    it("sees a write addressed to any table of the tree: an inheriting child, a sub-partitioned partition, a leaf", function()
      assert.is_true(skipped("ct_v"))
      for i, t in ipairs({ "ct_child", "ct_mid", "ct_leaf", "ct_part", "ct_parent" }) do
        mv.exec("INSERT INTO " .. t .. " VALUES (" .. i .. ")")
        assert.is_false(skipped("ct_v"), t)
        assert.is_true(skipped("ct_v"), t)
      end
      assert.are.same({ { a = 2, b = 3 } }, mv.query("SELECT a::int, b::int FROM ct_v"))
    end)

    it("never skips when a new partition has no tracking yet", function()
      mv.exec("CREATE TABLE ct_new PARTITION OF ct_part FOR VALUES FROM (100) TO (200)")
      mv.exec("INSERT INTO ct_new VALUES (150)")
      assert.is_false(skipped("ct_v"))
      assert.is_false(skipped("ct_v"))
    end)
  end)
end

-- The statement trigger itself, in C (the extension matviews_changes,
-- pgext/) and in PL/pgSQL: both record (table, the top-level transaction's
-- xid8) in matviews_table_changes, from a subtransaction too, for TRUNCATE
-- too, into whichever table has that name in the catalog's schema now; apply
-- moves triggers from one to the other without restarting tracking.
local function apply_with(dir, config)
  local r = apply_config(config, "--definitions " .. H.q(dir))
  assert.are.equal(0, r.code, r.err .. r.out)
  return r.out
end
-- the change rows of table t: their xids as text
local function rows(c, t)
  local out = {}
  for _, r in ipairs(c:query("SELECT xid::text AS x FROM matviews_table_changes WHERE relid = $1::regclass ORDER BY xid", t)) do
    out[#out + 1] = r.x
  end
  return out
end

describe("the change trigger", function()
  local dir
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE tr_src (id int)")
    dir = H.defs_dir({ ["v.lua"] = 'view "tr_v" { sql = "SELECT count(*) AS n FROM tr_src", refresh_when = "changed" }\n' })
  end)

  for _, mode in ipairs({ { name = "PL/pgSQL", fn = "matviews_note_change", config = 'change_trigger = "plpgsql"' },
                          { name = "C", fn = "matviews_note_change_c", config = "" } }) do
    it(mode.name .. ": records the top-level transaction from a savepoint, and TRUNCATE", function()
      local out = apply_with(dir, mode.config)
      assert.are.equal(mode.fn, trigger_of("tr_src"), out)
      local w <close> = mv.connect("dbname=" .. H.dbname)
      w:exec("DELETE FROM matviews_table_changes WHERE relid = 'tr_src'::regclass")
      w:exec("BEGIN")
      w:exec("SAVEPOINT a")
      w:exec("INSERT INTO tr_src VALUES (1)")
      w:exec("RELEASE SAVEPOINT a")
      w:exec("SAVEPOINT b")
      w:exec("INSERT INTO tr_src VALUES (2)")
      w:exec("ROLLBACK TO SAVEPOINT b") -- its row goes with it
      local top = w:query("SELECT pg_current_xact_id()::text AS x")[1].x
      w:exec("COMMIT")
      w:exec("BEGIN")
      w:exec("SAVEPOINT c")
      w:exec("TRUNCATE tr_src")
      local top2 = w:query("SELECT pg_current_xact_id()::text AS x")[1].x
      w:exec("COMMIT")
      -- the released savepoint's insert, then the TRUNCATE, each as its top-level xid
      assert.are.same({ top, top2 }, rows(w, "tr_src"))
      refresh("tr_v")
      assert.is_true(skipped("tr_v"))
      w:exec("BEGIN"); w:exec("SAVEPOINT s"); w:exec("INSERT INTO tr_src VALUES (3)"); w:exec("RELEASE SAVEPOINT s"); w:exec("COMMIT")
      assert.is_false(skipped("tr_v"))
      assert.are.same({ { n = 1 } }, mv.query("SELECT n::int FROM tr_v"))
    end)
  end

  it("moves the triggers between PL/pgSQL and C without restarting tracking, and says which it uses", function()
    local out = apply_with(dir, 'change_trigger = "plpgsql"')
    assert.are.equal("matviews_note_change", trigger_of("tr_src"))
    refresh("tr_v")
    assert.is_true(skipped("tr_v"))
    out = apply_with(dir, "")
    assert.matches("tracking changes of public.tr_src %(trigger replaced%)\n", out)
    assert.matches("change trigger: C %(extension matviews_changes%)\n", out)
    assert.are.equal("matviews_note_change_c", trigger_of("tr_src"))
    assert.are.same({ { e = "A" } }, mv.query("SELECT tgenabled::text AS e FROM pg_trigger WHERE tgname = 'matviews_track_changes'"))
    assert.is_true(skipped("tr_v")) -- tracking went on: the baseline from before still holds
    mv.exec("INSERT INTO tr_src VALUES (10)")
    assert.is_false(skipped("tr_v"))
    assert.matches("nothing to do\n", apply_with(dir, ""))
    out = apply_with(dir, 'change_trigger = "plpgsql"')
    assert.matches('change trigger: PL/pgSQL %(the configuration says change_trigger = "plpgsql"%)\n', out)
    assert.is_true(skipped("tr_v"))
    mv.exec("INSERT INTO tr_src VALUES (11)")
    assert.is_false(skipped("tr_v"))
    apply_with(dir, "")
  end)

  it("C: writes into the change table that has the name now (dropped, re-created, altered)", function()
    assert.are.equal("matviews_note_change_c", trigger_of("tr_src"))
    local w <close> = mv.connect("dbname=" .. H.dbname)
    w:exec("INSERT INTO tr_src VALUES (20)") -- this session has fired the trigger already
    mv.exec("ALTER TABLE matviews_table_changes RENAME TO tr_old_changes")
    mv.exec("CREATE UNLOGGED TABLE matviews_table_changes (LIKE tr_old_changes INCLUDING ALL)")
    w:exec("INSERT INTO tr_src VALUES (21)")
    assert.are.equal(1, #rows(w, "tr_src"))
    -- another layout (a column more, an index on an expression): an ordinary INSERT
    mv.exec("ALTER TABLE matviews_table_changes ADD COLUMN note text")
    mv.exec("CREATE INDEX ON matviews_table_changes ((relid::int + 1))")
    w:exec("INSERT INTO tr_src VALUES (22)")
    assert.are.equal(2, #rows(w, "tr_src"))
    assert.are.equal(2, mv.query([[SELECT count(*)::int AS n FROM matviews_table_changes
      WHERE relid = 'tr_src'::regclass AND relid::int + 1 > 0]])[1].n) -- reached through the index too
    mv.exec("DROP TABLE matviews_table_changes")
    local ok, err = pcall(w.exec, w, "INSERT INTO tr_src VALUES (23)")
    assert.is_false(ok)
    assert.matches("no table matviews_table_changes", tostring(type(err) == "table" and err.message or err))
    mv.exec("ALTER TABLE tr_old_changes RENAME TO matviews_table_changes")
    w:exec("INSERT INTO tr_src VALUES (24)")
    assert.is_true(#rows(w, "tr_src") >= 1)
    assert.is_false(skipped("tr_v"))
    assert.is_true(skipped("tr_v"))
  end)

  it("C: records a table once per transaction, and again after a rollback to a savepoint that recorded it", function()
    assert.are.equal("matviews_note_change_c", trigger_of("tr_src"))
    local w <close> = mv.connect("dbname=" .. H.dbname)
    local function xact(statements)
      w:exec("DELETE FROM matviews_table_changes WHERE relid = 'tr_src'::regclass")
      w:exec("BEGIN")
      for _, sql in ipairs(statements) do w:exec(sql) end
      local top = w:query("SELECT pg_current_xact_id()::text AS x")[1].x
      w:exec("COMMIT")
      return top
    end
    local top = xact({ "INSERT INTO tr_src VALUES (30)", "INSERT INTO tr_src VALUES (31)", "UPDATE tr_src SET id = 32 WHERE id = 31" })
    assert.are.same({ top }, rows(w, "tr_src"))
    top = xact({ "SAVEPOINT a", "INSERT INTO tr_src VALUES (33)", "ROLLBACK TO SAVEPOINT a", "INSERT INTO tr_src VALUES (34)" })
    assert.are.same({ top }, rows(w, "tr_src"))
    top = xact({ "SAVEPOINT a", "SAVEPOINT b", "INSERT INTO tr_src VALUES (35)", "RELEASE SAVEPOINT b",
      "ROLLBACK TO SAVEPOINT a", "DELETE FROM tr_src WHERE id = 35" })
    assert.are.same({ top }, rows(w, "tr_src"))
    top = xact({ "SAVEPOINT a", "INSERT INTO tr_src VALUES (36)", "RELEASE SAVEPOINT a", "SAVEPOINT b",
      "INSERT INTO tr_src VALUES (37)", "ROLLBACK TO SAVEPOINT b" })
    assert.are.same({ top }, rows(w, "tr_src")) -- the row of a, released, stays
    -- a transaction that rolls back leaves nothing; the next one records again
    w:exec("BEGIN"); w:exec("INSERT INTO tr_src VALUES (38)"); w:exec("ROLLBACK")
    top = xact({ "INSERT INTO tr_src VALUES (39)" })
    assert.are.same({ top }, rows(w, "tr_src"))
    -- a change table emptied in the transaction (TRUNCATE: a new file) is written again
    w:exec("BEGIN"); w:exec("INSERT INTO tr_src VALUES (40)"); w:exec("TRUNCATE matviews_table_changes")
    w:exec("INSERT INTO tr_src VALUES (41)")
    top = w:query("SELECT pg_current_xact_id()::text AS x")[1].x
    w:exec("COMMIT")
    assert.are.same({ top }, rows(w, "tr_src"))
    -- the TRUNCATE took the sentinel too: the check refreshes and seeds one
    assert.is_false(skipped("tr_v"))
    assert.is_true(skipped("tr_v"))
  end)

  it("C: refuses to run other than as an AFTER statement trigger", function()
    mv.exec("CREATE TABLE tr_row (id int)")
    mv.exec("CREATE TRIGGER tr_bad BEFORE INSERT ON tr_row FOR EACH ROW EXECUTE FUNCTION matviews_note_change_c()")
    local ok, err = pcall(mv.exec, "INSERT INTO tr_row VALUES (1)")
    assert.is_false(ok)
    assert.matches("must be an AFTER %.%.%. FOR EACH STATEMENT trigger", tostring(type(err) == "table" and err.message or err))
    ok = pcall(mv.query, "SELECT matviews_note_change_c()")
    assert.is_false(ok)
  end)
end)
