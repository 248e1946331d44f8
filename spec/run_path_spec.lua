-- The run path (issue 12) and what hardening asks of it (issue 13): the
-- printed duration is the recorded one and the lock wait is shown apart,
-- sequential and parallel lines alike; the recorder reconnects to finalise a
-- run whose service succeeded; a run whose lock holder died is cancelled and
-- recorded failed; parallel refresh goes on with the connections the server
-- allows, survives a lost coordinator connection, and a Ctrl-C cancels what
-- runs and starts nothing more (exit 130).
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

-- The recorded run of a view with that id.
local function run_row(id)
  return mv.query("SELECT status, duration_ms, rows_count, error FROM mat_view_refresh_runs WHERE id = $1", id)[1]
end

-- The newest run of a view.
local function last_run(view)
  local rows = P.runs("refresh", view)
  return rows[#rows]
end

-- Waits until some backend waits for an advisory lock.
local function advisory_waiter()
  return P.wait_for("a backend waiting for an advisory lock", function()
    return mv.query([[SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted]])[1]
  end)
end

describe("the run path", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE rp_src AS SELECT g AS id FROM generate_series(1, 7) g")
    for i = 1, 6 do
      mv.definitions.save({ name = "rp_" .. i, sql = "SELECT id FROM rp_src", unique_index_columns = { "id" } })
      assert.are.equal("success", mv.create("rp_" .. i).status)
    end
    mv.definitions.save({ name = "rp_slow", sql = "SELECT id FROM rp_src, pg_sleep(0.6)" })
    mv.exec("CREATE MATERIALIZED VIEW rp_slow AS SELECT id FROM rp_src, pg_sleep(0.6) WITH NO DATA")
    mv.definitions.save({ name = "rp_0", sql = "SELECT id FROM rp_src, pg_sleep(30)" })
    mv.exec("CREATE MATERIALIZED VIEW rp_0 AS SELECT id FROM rp_src, pg_sleep(30) WITH NO DATA")
  end)

  it("defers the flush of each finish in a refresh batch, and ends the batch with a synchronous commit", function()
    local tag = ("flush_%d_%d"):format(os.time(), math.random(1e6))
    local log_env = { env = { PGOPTIONS = "-c log_statement=all" } }
    local function mark(m) assert.are.equal(0, H.mv("-e " .. H.q(("mv.query(\"SELECT '%s'\")"):format(m)), log_env).code) end
    local function between(a, b)
      return P.wait_for("the marker " .. b .. " in the server log", function()
        local log = H.slurp(H.tmp .. "/server.log")
        local from, to = log:find(a, 1, true), log:find(b, 1, true)
        return from and to and log:sub(from, to) or nil
      end)
    end
    mark("a_" .. tag)
    local r = H.mv("--yes refresh rp_3 rp_4", log_env)
    mark("b_" .. tag)
    assert.are.equal(0, r.code, r.err)
    local batch = between("a_" .. tag, "b_" .. tag)
    -- each finish asks for synchronous_commit = off ($7 of a refresh's finish) ...
    local finishes = select(2, batch:gsub("UPDATE mat_view_refresh_runs SET status = %$2[^\n]*\n[^\n]*%$7 = 'off'", ""))
    assert.are.equal(2, finishes, batch)
    -- ... and a synchronous commit on the recorder, after the last finish, flushes them
    local last_finish = 0
    for pos in batch:gmatch("()UPDATE mat_view_refresh_runs SET status = ") do last_finish = pos end
    local flush = batch:find("UPDATE mat_view_refresh_runs SET updated_at = updated_at WHERE id = $1", 1, true)
    assert.is_truthy(flush and flush > last_finish, batch)
    -- a refresh on its own (a script's mv.refresh) keeps a synchronous finish
    mark("c_" .. tag)
    assert.are.equal(0, H.mv("-e " .. H.q("assert(mv.refresh('rp_3').status == 'success')"), log_env).code)
    mark("d_" .. tag)
    local single = between("c_" .. tag, "d_" .. tag)
    assert.is_nil(single:find("$7 = 'off'", 1, true), single)
    assert.is_truthy(single:find("UPDATE mat_view_refresh_runs SET status = ", 1, true), single)
  end)

  it("refreshes after the connections' prepared statements were deallocated, and after a failed refresh", function()
    local conn = mv.connect("dbname=" .. H.dbname)
    assert.are.equal("success", mv.refresh("rp_1", { conn = conn }).status)
    local rec = mv.jobs.recorder(conn)
    -- the caller's timeouts are put back before its next statement, which
    -- may be one that runs only outside a transaction block
    conn:exec("VACUUM rp_src")
    conn:exec("DISCARD ALL")
    rec:exec("DEALLOCATE ALL")
    local run = mv.refresh("rp_1", { conn = conn })
    assert.are.equal("success", run.status, tostring(run.error))
    assert.are.equal(7, run.rows_count)
    -- a REFRESH that fails leaves the session's timeouts to be set again
    conn:exec("ALTER MATERIALIZED VIEW rp_2 RENAME TO rp_2_away")
    local failed = mv.refresh("rp_2", { conn = conn })
    conn:exec("ALTER MATERIALIZED VIEW rp_2_away RENAME TO rp_2")
    assert.are.equal("failed", failed.status)
    assert.matches("materialized view public.rp_2 does not exist", failed.error, 1, true)
    assert.are.equal("success", mv.refresh("rp_2", { conn = conn }).status)
    conn:close()
  end)

  it("runs a script one way: `matviews SCRIPT` and `matviews run SCRIPT` report an error alike", function()
    local f = H.write(H.tmpfile(".lua"), "local x = 1\nerror('boom ' .. select('#', ...))\n")
    local direct, run = H.mv(H.q(f) .. " a b"), H.mv("run " .. H.q(f) .. " a b")
    assert.are.same({ 1, 1 }, { direct.code, run.code })
    local head = ("matviews: %s:2: boom 2\nstack traceback:\n\t[C]: in function 'error'\n\t%s:2: in main chunk\n"):format(f, f)
    assert.are.equal(head, direct.err:sub(1, #head))
    assert.are.equal(head, run.err:sub(1, #head))
  end)

  it("prints the recorded duration and rows, sequential and parallel alike", function()
    for _, args in ipairs({ "rp_1 rp_2", "rp_1 rp_2 --parallel 2" }) do
      local r = H.mv("--yes refresh " .. args)
      assert.are.equal(0, r.code, r.err)
      for view, ms, rows in r.out:gmatch("refresh (rp_%d): success in (%d+) ms, (%d+) rows\n") do
        local run = last_run(view)
        assert.are.same({ run.duration_ms, run.rows_count }, { tonumber(ms), tonumber(rows) })
      end
      local n = select(2, r.out:gsub("success in %d+ ms, 7 rows\n", ""))
      assert.are.equal(2, n, r.out)
    end
  end)

  it("shows the time spent waiting for the lock apart", function()
    local key = mv.query("SELECT hashtextextended('matviews:' || 'public.rp_3', 0) AS k")[1].k
    local holder = mv.connect("dbname=" .. H.dbname)
    holder:query("SELECT pg_advisory_lock($1)", key)
    local p = P.spawn("--yes refresh rp_3")
    advisory_waiter()
    mv.core.sys.sleep_ms(200)
    holder:close()
    local r = P.wait(p)
    assert.are.equal(0, r.code, r.err)
    local run = last_run("rp_3")
    assert.is_true(run.meta.lock_wait_ms >= 200)
    assert.matches("^%[1/1%] refresh rp_3: success in " .. run.duration_ms .. " ms, 7 rows %(waited %d+ ms for the lock%)\n$", r.out)
  end)

  it("records a run whose service succeeded as a success when the recorder's session dies before finish", function()
    local r = H.mv("-e " .. H.q([[
      local real = mv.services.regular_refresh
      mv.services.regular_refresh = function(defn, opts)
        local resp = real(defn, opts)
        local rec = mv.jobs.recorder(mv.conn())
        local killer = mv.connect("")
        killer:query("SELECT pg_terminate_backend($1)", rec:info().pid)
        killer:close()
        return resp
      end
      local run = mv.refresh("rp_4")
      print(run.status, run.rows_count)]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("success\t7\n", r.out)
    local run = last_run("rp_4")
    assert.are.same({ 2, 7 }, { run.status, run.rows_count })
  end)

  it("cancels and fails a run whose lock holder died, so that no second run overlaps it", function()
    local p = P.spawn("--yes refresh rp_slow")
    local row = P.run_with_status("refresh", "rp_slow", 1)
    P.wait_query("REFRESH MATERIALIZED VIEW%rp_slow%")
    mv.query("SELECT pg_terminate_backend($1)", row.backend_pid)
    local r = P.wait(p)
    assert.are.equal(1, r.code)
    local done = run_row(row.id)
    assert.are.equal(3, done.status)
    assert.are.equal("rp_slow: lost the view's lock (the session holding it ended); the service's statement was cancelled",
      done.error)
    assert.are.same({}, mv.query([[SELECT 1 FROM pg_stat_activity WHERE state = 'active'
      AND query LIKE 'REFRESH MATERIALIZED VIEW%rp_slow%' AND pid <> pg_backend_pid()]]))
  end)

  it("goes on with the connections the server allows, and says so once", function()
    -- a role that may make 3 connections (superusers have no limit)
    if mv.query("SELECT 1 FROM pg_roles WHERE rolname = 'rp_limited'")[1] then
      mv.exec("DROP OWNED BY rp_limited")  -- from an earlier run of this file
      mv.exec("DROP ROLE rp_limited")
    end
    mv.exec("CREATE ROLE rp_limited LOGIN CONNECTION LIMIT 3")
    mv.exec("GRANT ALL ON ALL TABLES IN SCHEMA public TO rp_limited")
    mv.exec("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO rp_limited")
    for i = 1, 4 do mv.exec(("ALTER MATERIALIZED VIEW rp_%d OWNER TO rp_limited"):format(i)) end
    -- the command's own connection and one worker's two: the others cannot
    -- connect. The refreshes wait on rp_src until the command has said so.
    local locker = mv.connect("dbname=" .. H.dbname)
    locker:exec("BEGIN")
    locker:exec("LOCK TABLE rp_src IN ACCESS EXCLUSIVE MODE")
    local p = P.spawn("--yes refresh rp_1 rp_2 rp_3 rp_4 --parallel 3", { env = { PGUSER = "rp_limited" } })
    P.wait_for("the command to say how many workers connected", function() return H.slurp(p.err) ~= "" end)
    locker:exec("COMMIT")
    locker:close()
    local r = P.wait(p)
    assert.are.equal(0, r.code, r.err)
    assert.matches("^matviews: 1 of 3 refresh workers could connect %(.*%); going on with 1\n$", r.err)
    assert.are.equal(4, select(2, r.out:gsub("success in %d+ ms, 7 rows", "")), r.out)
  end)

  it("reconnects the coordinator's lost connection", function()
    local pid = mv.conn():info().pid
    mv.connect("dbname=" .. H.dbname):query("SELECT pg_terminate_backend($1)", pid)
    P.wait_for("the backend to end", function()
      return #mv.connect("dbname=" .. H.dbname):query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid) == 0
    end)
    local r = mv.refresh_all({ parallel = 2, views = { "rp_5", "rp_6" } })
    assert.are.same({ true, 2 }, { r.ok, r.succeeded })
    assert.are_not.equal(pid, mv.conn():info().pid)
  end)

  it("cancels the running refreshes on Ctrl-C, starts no other, and exits 130", function()
    local before = mv.query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
    local p = P.spawn("--yes refresh rp_0 rp_5 rp_6 rp_slow --parallel 1")
    P.wait_query("REFRESH MATERIALIZED VIEW%rp_0%")
    assert.is_true(P.kill(P.pid(p), "INT"))
    local r = P.wait(p)
    assert.are.equal(130, r.code, r.err)
    assert.matches("interrupted: 3 not started\n$", r.err)
    assert.matches("refresh rp_0: failed in %d+ ms: canceling statement due to user request\n$", r.out)
    local runs = mv.query("SELECT d.name, r.status FROM mat_view_refresh_runs r JOIN mat_view_definitions d"
      .. " ON d.id = r.mat_view_definition_id WHERE r.id > $1", before)
    assert.are.same({ { name = "rp_0", status = 3 } }, runs)
  end)
end)
