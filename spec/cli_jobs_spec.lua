-- create, refresh and delete end to end: the commands run the real jobs
-- and services against the database, record runs, and the reports see them.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"
local cjson = require "cjson"

local function matview(name)
  return mv.query("SELECT ispopulated FROM pg_matviews WHERE schemaname = 'public' AND matviewname = $1", name)[1]
end

local function last_run(tbl, name)
  return mv.query(([[SELECT r.status, r.error, r.meta::text AS meta FROM %s r
    JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE d.name = $1
    ORDER BY r.id DESC LIMIT 1]]):format(tbl), name)[1]
end

describe("create, refresh and delete with the jobs", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE src (x int)")
    mv.exec("INSERT INTO src SELECT generate_series(1, 5)")
    mv.exec([[INSERT INTO mat_view_definitions (name, sql) VALUES
      ('mv_a', 'SELECT x FROM src'), ('mv_b', 'SELECT count(*) AS n FROM src'),
      ('mv_bad', 'SELECT x FROM src WHERE x / 0 = 1')]])
  end)

  it("creates views and records the runs", function()
    local r = H.mv("create mv_a mv_b --yes --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.same({ "success", "success" }, { doc[1].status, doc[2].status })
    local id = mv.query("SELECT id FROM mat_view_definitions WHERE name = 'mv_a'")[1].id
    assert.are.same({ "create", id }, { doc[1].op, doc[1].mat_view_definition_id })
    assert.is_true(matview("mv_a").ispopulated)
    assert.are.equal(2, last_run("mat_view_create_runs", "mv_b").status)
  end)

  it("refreshes --all, keeps going after a failure, exits 1", function()
    local r = H.mv("refresh --all --yes")
    assert.are.equal(1, r.code)
    assert.matches("^%[1/3%] refresh mv_a: success in %d+ ms", r.out)
    assert.matches("\n%[2/3%] refresh mv_b: success in %d+ ms", r.out)
    assert.matches("\n%[3/3%] refresh mv_bad: failed in %d+ ms: ", r.out)
    local bad = last_run("mat_view_refresh_runs", "mv_bad")
    assert.are.equal(3, bad.status)
    assert.are_not.equal(mv.null, bad.error)
  end)

  it("counts rows as --row-count or MATVIEWS_ROW_COUNT_STRATEGY says, the argument first", function()
    local doc = cjson.decode(H.mv("refresh mv_a --row-count exact --yes --json").out)
    assert.are.equal(5, doc[1].rows_count)
    doc = cjson.decode(H.mv("refresh mv_a --yes --json", { env = { MATVIEWS_ROW_COUNT_STRATEGY = "exact" } }).out)
    assert.are.equal(5, doc[1].rows_count)
    assert.are.equal("exact", cjson.decode(last_run("mat_view_refresh_runs", "mv_a").meta).row_count_strategy)
    doc = cjson.decode(H.mv("refresh mv_a --yes --json --row-count none", { env = { MATVIEWS_ROW_COUNT_STRATEGY = "exact" } }).out)
    assert.are.equal("success", doc[1].status)
    assert.are.equal("none", cjson.decode(last_run("mat_view_refresh_runs", "mv_a").meta).row_count_strategy)
  end)

  it("re-creates with MATVIEWS_FORCE=1 and creates without data", function()
    local r = H.mv("create mv_b --yes --no-data", { env = { MATVIEWS_FORCE = "1" } })
    assert.are.equal(0, r.code)
    assert.is_false(matview("mv_b").ispopulated)
    assert.is_true(cjson.decode(last_run("mat_view_create_runs", "mv_b").meta).force)
  end)

  it("deletes after the prompt, with MATVIEWS_CASCADE from the environment", function()
    local r = H.tty("delete mv_b", { stdin = "n\n" })
    assert.are.equal(3, r.code)
    assert.truthy(matview("mv_b"))
    r = H.tty("delete mv_b", { stdin = "y\n", env = { MATVIEWS_CASCADE = "1" } })
    assert.are.equal(0, r.code)
    assert.is_nil(matview("mv_b"))
    assert.is_true(cjson.decode(last_run("mat_view_delete_runs", "mv_b").meta).cascade)
  end)

  it("shows the recorded runs in runs and stats", function()
    local runs = cjson.decode(H.mv("runs mv_a --json --op refresh").out)
    assert.are.equal(4, #runs)
    -- Durations depend on the machine's load, and `slow` compares the last
    -- with the average of the others: pin them so the flag is decided here.
    mv.exec("UPDATE mat_view_refresh_runs SET duration_ms = 10")
    local s = cjson.decode(H.mv("stats mv_a --json").out)[1]
    assert.are.same({ 4, 0, "success", false }, { s.success_count, s.failure_count, s.last_status, s.slow })
  end)

  it("marks the run of a killed process orphaned in runs", function()
    -- mv_slow runs until cj_gate holds a row: it is still running when the
    -- spec kills its process, however slow the machine
    mv.exec("CREATE TABLE cj_gate (open boolean)")
    mv.exec([[CREATE FUNCTION cj_gate() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM cj_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; RETURN 1; END $$]])
    finally(function() mv.exec("INSERT INTO cj_gate VALUES (true)") end) -- its backend may end too
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ('mv_slow', 'SELECT cj_gate() AS x')")
    assert.are.equal(0, H.mv("create mv_slow --no-data --yes").code)
    local pid = H.sh(H.bin .. " refresh mv_slow --yes >/dev/null 2>&1 & echo $!").out:match("%d+")
    local function running()
      return mv.runs({ view = "mv_slow", op = "refresh", status = "running" })[1]
    end
    P.wait_for("the refresh to show as running", running)
    assert.is_false(running().orphaned)
    os.execute("kill -9 " .. pid)
    local orphans
    P.wait_for("the run to show as orphaned", function()
      orphans = cjson.decode(H.mv("runs --status orphaned --json").out)
      return #orphans > 0
    end)
    assert.are.equal(1, #orphans)
    assert.are.same({ "mv_slow", "refresh", "running", true, tonumber(pid) },
      { orphans[1].view, orphans[1].op, orphans[1].status, orphans[1].orphaned, orphans[1].process_pid })
    assert.matches("\n *%d+ +refresh +mv_slow +orphaned ", H.mv("runs mv_slow").out)
  end)

  it("queues the jobs when the configuration names the queue adapter", function()
    local cfg = H.write(H.tmpfile(".lua"), 'job_adapter = "queue"\n')
    local r = H.mv("--config " .. H.q(cfg) .. " refresh mv_a --yes --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.is_true(doc[1].queued)
    local job = mv.query("SELECT op, status FROM matviews_jobs WHERE id = $1", doc[1].job_id)[1]
    assert.are.same({ op = "refresh", status = 0 }, job)
    r = H.mv("--config " .. H.q(cfg) .. " refresh mv_a --yes")
    assert.matches("^%[1/1%] refresh mv_a: queued %(job %d+%)\n$", r.out)
  end)
end)
