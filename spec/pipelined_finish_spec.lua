-- Round trips a recorded refresh saves. A batch's finishes are pipelined
-- (recorder.c finish_pipelined): sent without waiting, the next run's begin
-- sent behind them, their result read first. Every run is still finalised,
-- the returned runs carry the row's timestamps by the time the batch prints
-- them, a finish that fails on the server is written again (on a new
-- connection when the session was lost, the begin behind it too), and one
-- that cannot be written is reported on stderr with its lock released, and
-- its run counted failed.
local H = require "spec.helper"
local mv = require "matviews"

describe("pipelined finishes in a refresh batch", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE pf_src AS SELECT g AS id FROM generate_series(1, 3) g")
    for _, n in ipairs({ "pf_a", "pf_b", "pf_c" }) do
      mv.definitions.save({ name = n, sql = "SELECT id FROM pf_src" })
      assert.are.equal("success", mv.create(n).status)
    end
    mv.exec("CREATE SEQUENCE pf_fail")
    -- fails the finish of pf_b's runs while pf_fail says so (a sequence:
    -- its count survives the failed transaction)
    mv.exec([[CREATE FUNCTION pf_fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status IN (2, 3) AND OLD.status = 1 AND NEW.mat_view_definition_id =
             (SELECT id FROM mat_view_definitions WHERE name = 'pf_b')
           AND nextval('pf_fail') <= (SELECT coalesce(current_setting('pf.fail', true), '0')::int) THEN
          RAISE EXCEPTION 'finish refused by pf_fail';
        END IF;
        RETURN NEW;
      END $$]])
    mv.exec([[CREATE TRIGGER pf_fail BEFORE UPDATE ON mat_view_refresh_runs FOR EACH ROW EXECUTE FUNCTION pf_fail_finish()]])
  end)

  local function rows(ids)
    local out = {}
    for _, id in ipairs(ids) do
      out[#out + 1] = mv.query([[SELECT status, to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS s,
        to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS f, duration_ms
        FROM mat_view_refresh_runs WHERE id = $1]], id)[1]
    end
    return out
  end

  local function no_advisory_locks()
    return mv.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")[1].n == 0
  end

  it("finalises every run, and the runs it returns carry the recorded timestamps", function()
    local script = [[
      local runs = {}
      for _, n in ipairs({ "pf_a", "pf_b", "pf_c" }) do runs[#runs + 1] = mv.jobs.run("refresh", n, { defer_flush = true, pipeline_finish = true }) end
      assert(runs[3].finished_at == nil, "the last finish is not read before the batch ends")
      mv.jobs.flush()
      print(mv.json.encode(runs))]]
    local r = H.mv("-e " .. H.q(script))
    assert.are.equal(0, r.code, r.err)
    local runs = mv.json.decode(r.out)
    local ids = {}
    for i, run in ipairs(runs) do ids[i] = run.id end
    for i, row in ipairs(rows(ids)) do
      assert.are.equal(2, row.status)
      assert.are.same({ "success", row.s, row.f, row.duration_ms },
        { runs[i].status, runs[i].started_at, runs[i].finished_at, runs[i].duration_ms })
    end
    assert.is_true(no_advisory_locks())
  end)

  it("writes a finish the server refused once again, and reports one it refuses for good", function()
    mv.exec("SELECT setval('pf_fail', 1, false)")
    -- refused once: written again when the next begin reads its result
    local r = H.mv("--yes --json refresh pf_a pf_b pf_c", { env = { PGOPTIONS = "-c pf.fail=1" } })
    assert.are.equal(0, r.code, r.err)
    local ids = {}
    for i, run in ipairs(mv.json.decode(r.out)) do ids[i] = run.id; assert.is_string(run.finished_at) end
    for _, row in ipairs(rows(ids)) do assert.are.equal(2, row.status) end
    assert.are.equal("", r.err)
    assert.is_true(no_advisory_locks())
    -- refused for good: its outcome on stderr, its lock released, the batch goes on
    mv.exec("SELECT setval('pf_fail', 1, false)")
    r = H.mv("--yes --json refresh pf_a pf_b pf_c", { env = { PGOPTIONS = "-c pf.fail=1000" } })
    ids = {}
    local out = mv.json.decode(r.out)
    for i, run in ipairs(out) do ids[i] = run.id end
    assert.are.equal(1, r.code)
    assert.are.same({ "success", "failed", "success" }, { out[1].status, out[2].status, out[3].status })
    assert.are.equal(("could not finalise run %d of pf_b: finish refused by pf_fail"):format(ids[2]), out[2].error)
    local st = rows(ids)
    assert.are.same({ 2, 1, 2 }, { st[1].status, st[2].status, st[3].status })
    assert.matches(("could not record the outcome of refresh run %d of pf_b %%(finish refused by pf_fail%%): success in %%d+ ms")
      :format(ids[2]), r.err)
    assert.is_true(no_advisory_locks())
    mv.exec("UPDATE mat_view_refresh_runs SET status = 3 WHERE id = $1", ids[2])
  end)

  it("counts failed a view run by the parallel coordinator whose pipelined finish is refused for good", function()
    mv.exec("SELECT setval('pf_fail', 1, false)")
    local r = H.mv("--yes refresh pf_a pf_b pf_c --parallel 1", { env = { PGOPTIONS = "-c pf.fail=1000" } })
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("could not record the outcome of refresh run %d+ of pf_b %(finish refused by pf_fail%)", r.err)
    assert.is_true(no_advisory_locks())
    mv.exec("UPDATE mat_view_refresh_runs SET status = 3 WHERE status = 1")
  end)

  it("counts failed a view whose pipelined finish a pool worker could not write", function()
    mv.exec("SELECT setval('pf_fail', 1, false)")
    -- both views go to the worker (queued two deep), pf_b first
    local r = H.mv("--yes --json refresh pf_b pf_c --parallel 2", { env = { PGOPTIONS = "-c pf.fail=1000" } })
    assert.are.equal(1, r.code, r.out .. r.err)
    assert.matches("could not record the outcome of refresh run %d+ of pf_b %(finish refused by pf_fail%)", r.err)
    local out = mv.json.decode(r.out)
    local by = {}
    for _, run in ipairs(out.runs or out) do by[run.name or run.view] = run.status end
    assert.are.same({ pf_b = "failed", pf_c = "success" }, by)
    assert.is_true(no_advisory_locks())
    mv.exec("UPDATE mat_view_refresh_runs SET status = 3 WHERE status = 1")
  end)

  it("reconnects a recorder lost while its finish was pending, writes the row and begins the next run", function()
    -- the first finish of pf_b ends its own session (the recorder's)
    mv.exec("CREATE SEQUENCE pf_kill")
    mv.exec([[CREATE FUNCTION pf_kill_finish() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status IN (2, 3) AND OLD.status = 1 AND NEW.mat_view_definition_id =
             (SELECT id FROM mat_view_definitions WHERE name = 'pf_b') AND nextval('pf_kill') = 1 THEN
          PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
        RETURN NEW;
      END $$]])
    mv.exec([[CREATE TRIGGER pf_kill BEFORE UPDATE ON mat_view_refresh_runs FOR EACH ROW EXECUTE FUNCTION pf_kill_finish()]])
    local r = H.mv("--yes --json refresh pf_a pf_b pf_c")
    mv.exec("DROP TRIGGER pf_kill ON mat_view_refresh_runs")
    assert.are.equal(0, r.code, r.err)
    local out = mv.json.decode(r.out)
    local ids = {}
    for i, run in ipairs(out) do ids[i] = run.id; assert.are.equal("success", run.status) end
    local st = rows(ids)
    assert.are.same({ 2, 2, 2 }, { st[1].status, st[2].status, st[3].status })
    assert.is_string(out[2].finished_at)
    -- pf_b's finish ran twice: the pending one ended its session, the one written again passed
    assert.are.equal(3, mv.query("SELECT nextval('pf_kill')::int AS n")[1].n)
    assert.is_true(no_advisory_locks())
  end)
end)

-- A regular refresh sends its ANALYZE and count in the REFRESH's round
-- trip (svc_basic.c refresh_pipelined): what the run records is as before.
describe("the ANALYZE sent with the REFRESH", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE pa_src (d int)")
    mv.exec("INSERT INTO pa_src SELECT 1 FROM generate_series(1, 40)")
    mv.definitions.save({ name = "pa_v", sql = "SELECT 10 / d AS x FROM pa_src" })
    assert.are.equal("success", mv.create("pa_v").status)
  end)

  it("counts the new rows after a success, and drops its result after a failed REFRESH", function()
    mv.exec("INSERT INTO pa_src SELECT 1 FROM generate_series(1, 2)")
    local ok = mv.refresh("pa_v")
    assert.are.equal("success", ok.status)
    assert.are.equal(42, ok.rows_count)
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."pa_v"', 'ANALYZE "public"."pa_v"' }, ok.meta.sql)
    assert.are.equal("integer", math.type(ok.meta.response.analyze_ms))
    mv.exec("UPDATE pa_src SET d = 0")
    local bad = mv.refresh("pa_v", { retry = { attempts = 1 } })
    assert.are.equal("failed", bad.status)
    assert.matches("division by zero", bad.error, 1, true)
    assert.are.same({ 'REFRESH MATERIALIZED VIEW "public"."pa_v"' }, bad.meta.sql)
    assert.is_nil(bad.rows_count)
    assert.is_nil(bad.meta.response.warnings)
    -- the view still holds what the last success wrote
    assert.are.equal(42, mv.query("SELECT count(*)::int AS n FROM pa_v")[1].n)
    mv.exec("UPDATE pa_src SET d = 1")
  end)
end)

-- A view starts without waiting for the finish sent before it (recorder.c
-- run:confirm): when that finish then ends the recorder's session while
-- the view refreshes, the lock the view held is gone with it. The view's
-- REFRESH is cancelled (run:watch), the finish is written again on a new
-- session, which takes the view's run and lock over (run:regain), and the
-- attempt is made again.
describe("a recorder lost while the next view refreshes", function()
  local P = require "spec.proc_helper"

  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE rl_src AS SELECT g AS id FROM generate_series(1, 3) g")
    mv.exec("CREATE TABLE rl_gate (x int)")      -- rl_b's REFRESH waits while a session locks it
    mv.exec("CREATE TABLE rl_finish_gate (x int)") -- rl_a's first finish waits, then ends its session
    mv.definitions.save({ name = "rl_a", sql = "SELECT id FROM rl_src" })
    mv.definitions.save({ name = "rl_b", sql = "SELECT id FROM rl_src WHERE NOT EXISTS (SELECT 1 FROM rl_gate)" })
    assert.are.equal("success", mv.create("rl_a").status)
    assert.are.equal("success", mv.create("rl_b").status)
    mv.exec("CREATE SEQUENCE rl_kill")
    mv.exec([[CREATE FUNCTION rl_kill_finish() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status IN (2, 3) AND OLD.status = 1 AND NEW.mat_view_definition_id =
             (SELECT id FROM mat_view_definitions WHERE name = 'rl_a') AND nextval('rl_kill') = 1 THEN
          PERFORM 1 FROM rl_finish_gate;
          PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
        RETURN NEW;
      END $$]])
    mv.exec([[CREATE TRIGGER rl_kill BEFORE UPDATE ON mat_view_refresh_runs FOR EACH ROW EXECUTE FUNCTION rl_kill_finish()]])
  end)

  it("takes the view's run over on a new session and refreshes it again", function()
    local cfg = H.write(H.tmpfile(".lua"), "lock_timeout_ms = 60000\nrecord_timeout_ms = 60000\n")
    local gate, finish_gate = mv.connect("dbname=" .. H.dbname), mv.connect("dbname=" .. H.dbname)
    gate:exec("BEGIN")
    gate:exec("LOCK TABLE rl_gate IN ACCESS EXCLUSIVE MODE")
    finish_gate:exec("BEGIN")
    finish_gate:exec("LOCK TABLE rl_finish_gate IN ACCESS EXCLUSIVE MODE")
    local p = P.spawn("--config " .. cfg .. " --yes --json refresh rl_a rl_b")
    local ok, err = pcall(function()
      -- rl_a's finish waits in its trigger while rl_b's REFRESH waits on its gate
      P.wait_query("REFRESH MATERIALIZED VIEW%rl_b%", nil, "relation")
      P.wait_query("%UPDATE%mat_view_refresh_runs%", nil, "relation")
      finish_gate:exec("COMMIT") -- the finish ends the recorder's session
      P.wait_for("rl_a's run written again", function()
        return mv.query([[SELECT r.status FROM mat_view_refresh_runs r JOIN mat_view_definitions d
          ON d.id = r.mat_view_definition_id WHERE d.name = 'rl_a' ORDER BY r.id DESC LIMIT 1]])[1].status == 2
      end)
      P.wait_query("REFRESH MATERIALIZED VIEW%rl_b%", nil, "relation") -- the attempt made again
    end)
    if not ok then P.kill(P.pid(p), "TERM") end
    pcall(finish_gate.exec, finish_gate, "COMMIT")
    gate:exec("COMMIT")
    gate:close()
    finish_gate:close()
    local r = P.wait(p)
    assert(ok, err)
    assert.are.equal(0, r.code, r.err)
    local out = mv.json.decode(r.out)
    assert.are.same({ "success", "success" }, { out[1].status, out[2].status })
    local b = P.runs("refresh", "rl_b")
    local last = b[#b]
    assert.are.equal(2, last.status)
    assert.are.equal(2, #last.meta.attempts)
    assert.are.equal("recorder_lost", last.meta.attempts[1].retry_reason)
    -- rl_a's finish ran twice: the one that ended the session, the one written again
    assert.are.equal(2, mv.query("SELECT nextval('rl_kill')::int - 1 AS n")[1].n)
    assert.are.equal(0, mv.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")[1].n)
  end)
end)
