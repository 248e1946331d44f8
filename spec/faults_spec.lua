-- Faults on a real cluster: the host killed with SIGKILL in the middle of a
-- swap, a role without the privilege, a connection refused or never
-- answered, statement_timeout during a refresh, and the run tables locked
-- while a run is finalised. (The server stopping mid-refresh is in
-- faults_server_spec.lua: it needs a cluster of its own.)
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local WEAK = "mv_fault_weak"

-- The view's contents as sorted "id=v" text.
local function contents(view)
  local out = {}
  for _, r in ipairs(mv.query("SELECT id, v FROM " .. view .. " ORDER BY id")) do out[#out + 1] = r.id .. "=" .. r.v end
  return table.concat(out, ",")
end

-- Sets how long fault_delay() sleeps (it is in the views' SQL).
local function delay(secs) mv.exec("UPDATE knobs SET secs = $1", secs) end

-- A definition reading items through fault_delay(), created with its data.
local function slow_view(name, strategy, options)
  delay(0)
  mv.definitions.save({ name = name, sql = "SELECT id, v FROM items WHERE fault_delay() = 0",
    refresh_strategy = strategy, unique_index_columns = { "id" }, options = options })
  assert.are.equal("success", mv.create(name).status)
end

-- The relations of schema public, by name.
local function relations()
  local out = {}
  for _, r in ipairs(mv.query("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1")) do
    out[#out + 1] = r.relname
  end
  return out
end

-- A configuration file with these lines; returns its path.
local function config(text) return H.write(H.tmpfile(".lua"), text) end

describe("faults", function()
  setup(function()
    H.fresh_db()
    mv.init()
    P.items()
    mv.exec("CREATE TABLE knobs (secs float8 NOT NULL)")
    mv.exec("INSERT INTO knobs VALUES (0)")
    mv.exec([[CREATE FUNCTION fault_delay() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN PERFORM pg_sleep((SELECT secs FROM knobs)); RETURN 0; END $$]])
    -- fault_gate() waits until fault_gate holds a row: a run the spec
    -- must catch running stays running until the spec opens the gate
    mv.exec("CREATE TABLE fault_gate (open boolean)")
    mv.exec([[CREATE FUNCTION fault_gate() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM fault_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; RETURN 0; END $$]])
    mv.exec(("DO $$ BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"):format(WEAK))
  end)

  describe("the host killed with SIGKILL mid-swap", function()
    local before

    before_each(function()
      mv.exec("DROP MATERIALIZED VIEW IF EXISTS mv_sw CASCADE")
      slow_view("mv_sw", "swap")
      mv.exec("CREATE INDEX mv_sw_v ON mv_sw (v)")
      mv.exec("GRANT SELECT ON mv_sw TO " .. WEAK)
      mv.exec("CREATE VIEW mv_sw_count AS SELECT count(*) AS n FROM mv_sw")
      mv.exec("INSERT INTO items VALUES (100, 'new') ON CONFLICT DO NOTHING")
      before = contents("mv_sw")
    end)

    after_each(function() mv.exec("DELETE FROM items WHERE id = 100") end)

    -- The original view, as readers see it: data, indexes, grant, dependent.
    local function assert_intact()
      mv.exec("SET lock_timeout = '5s'") -- a reader left queued behind the swap fails, not hangs
      assert.are.equal(before, contents("mv_sw"))
      assert.are.same({ { indexname = "mv_sw_unique" }, { indexname = "mv_sw_v" } }, mv.query(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'mv_sw' ORDER BY 1"))
      assert.is_true(mv.query("SELECT has_table_privilege($1, 'mv_sw', 'SELECT') AS ok", WEAK)[1].ok)
      assert.are.equal(5, mv.query("SELECT n FROM mv_sw_count")[1].n)
      mv.exec("RESET lock_timeout")
    end

    -- Kills the host of the running refresh once `ready` (the service's
    -- backend row of pg_stat_activity) shows; waits until that backend has
    -- stopped. Returns the run and the service's backend pid.
    local function kill_when(p, what, ready)
      local run = P.run_with_status("refresh", "mv_sw", 1)
      local svc = P.wait_for(what, function()
        return mv.query([[SELECT pid FROM pg_stat_activity WHERE datname = current_database()
          AND pid <> pg_backend_pid() AND ]] .. ready)[1]
      end).pid
      P.kill(run.process_pid, "KILL")
      assert.are.equal(137, P.wait(p).code)
      P.wait_for("the service's backend to stop", function()
        return #mv.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", svc) == 0
      end)
      return run, svc
    end

    -- `matviews reconcile` fails the run and drops what is listed.
    local function assert_reconciled(run, dropped)
      local r = H.mv("reconcile")
      assert.are.equal(0, r.code, r.err)
      assert.matches(("refresh run %d of mv_sw: orphaned: the process running it %%(pid %d on [^)]+%%) ended before finishing"):format(
        run.id, run.process_pid), r.out)
      for _, rel in ipairs(dropped) do assert.matches("\ndropped public." .. rel .. "\n", r.out, 1, true) end
      assert.matches(("reconciled 1 run%%(s%%), 0 job%%(s%%); dropped %d relation%%(s%%)\n$"):format(#dropped), r.out)
      assert.are.equal(3, mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", run.id)[1].status)
      assert.are.same({}, mv.query("SELECT relname FROM pg_class WHERE relname LIKE 'mv\\_swap\\_%'"))
    end

    it("while the new contents are being built: the view stays as it was", function()
      delay(30)
      local p = P.spawn("--yes refresh mv_sw")
      local run = kill_when(p, "the swap's build", "query LIKE 'CREATE MATERIALIZED VIEW %mv_swap_mv_sw_%'")
      delay(0)
      assert_intact()
      -- the build's transaction died with its backend: nothing to drop
      assert_reconciled(run, {})
      assert.are.equal(0, H.mv("--yes refresh mv_sw").code) -- and the next swap works
    end)

    it("while the rename transaction waits for a lock: the view stays readable, the build is dropped", function()
      local holder = mv.connect("dbname=" .. H.dbname)
      holder:exec("BEGIN")
      holder:query("SELECT count(*) FROM mv_sw")
      local cfg = config("lock_timeout_ms = 60000\n")
      local p = P.spawn("--config " .. H.q(cfg) .. " --yes refresh mv_sw")
      local run, svc = kill_when(p, "the swap transaction's lock wait", "wait_event_type = 'Lock' AND query LIKE 'DROP %'")
      -- the dead host's backend gave up its lock request: readers are not
      -- queued behind it while the holder still holds its lock
      assert_intact()
      holder:exec("ROLLBACK")
      holder:close()
      assert_intact()
      assert_reconciled(run, { "mv_swap_mv_sw_" .. svc })
    end)
  end)

  describe("a role without the privilege to refresh", function()
    local dsn

    setup(function()
      dsn = H.q(("dbname=%s user=%s"):format(H.dbname, WEAK))
      mv.exec("GRANT SELECT ON mat_view_definitions, items, knobs TO " .. WEAK)
      mv.exec("GRANT SELECT, INSERT, UPDATE ON mat_view_refresh_runs TO " .. WEAK)
    end)

    for _, case in ipairs({
      { strategy = "regular", error = "must be owner of materialized view mv_priv_regular" },
      { strategy = "concurrent", error = "must be owner of materialized view mv_priv_concurrent" },
      { strategy = "swap", error = "permission denied for schema public" },
      { strategy = "swap", create = true, error = "must be owner of materialized view mv_priv_swap" },
    }) do
      local name = "mv_priv_" .. case.strategy
      local title = case.create and " (with CREATE on the schema: the build is dropped)" or ""
      it(("fails a %s refresh with SQLSTATE 42501 and changes nothing%s"):format(case.strategy, title), function()
        if not mv.definitions.get(name) then slow_view(name, case.strategy) end
        if case.create then mv.exec("GRANT CREATE ON SCHEMA public TO " .. WEAK) end
        mv.exec("INSERT INTO items VALUES (100, 'new') ON CONFLICT DO NOTHING")
        local data, rels = contents(name), relations()
        local r = H.mv("--dsn " .. dsn .. " --yes refresh " .. name)
        mv.exec("DELETE FROM items WHERE id = 100")
        if case.create then mv.exec("REVOKE CREATE ON SCHEMA public FROM " .. WEAK) end
        assert.are.equal(1, r.code)
        assert.matches(("^%%[1/1%%] refresh %s: failed in %%d+ ms: %s\n$"):format(name, case.error), r.out)
        local run = P.runs("refresh", name)
        run = run[#run]
        assert.are.same({ 3, case.error, "42501" }, { run.status, run.error, run.meta.error.sqlstate })
        assert.are.equal(data, contents(name))
        assert.are.same(rels, relations())
        assert.are.equal("postgres", mv.query("SELECT relowner::regrole::text AS o FROM pg_class WHERE relname = $1",
          name)[1].o)
      end)
    end
  end)

  describe("a connection that fails at start", function()
    it("refused: one line naming host and port, exit 1", function()
      for _, cmd in ipairs({ "list", "--yes refresh mv_x" }) do
        local r = H.mv("--dsn 'host=127.0.0.1 port=1 dbname=x connect_timeout=2' " .. cmd)
        assert.are.same({ 1, "", "matviews: could not connect to host 127.0.0.1 port 1: Connection refused\n" },
          { r.code, r.out, r.err })
      end
    end)

    it("timed out: a listening socket that never answers, one line, exit 1", function()
      local portf, pidf = H.tmpfile(".port"), H.tmpfile(".pid")
      -- listens (the kernel completes the handshake) but never accepts
      H.sh(("perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(Listen => 5, LocalAddr => \"127.0.0.1\","
        .. " LocalPort => 0) or die; open F, \">\", $ARGV[0]; print F $s->sockport; close F; sleep 60'"
        .. " %s >/dev/null 2>&1 & echo $! >%s"):format(H.q(portf), H.q(pidf)))
      local port = P.wait_for("the listener's port", function() return H.slurp(portf):match("^%d+$") end)
      local r = H.mv(("--dsn 'host=127.0.0.1 port=%s dbname=x connect_timeout=1' --yes refresh mv_x"):format(port))
      P.kill(tonumber(H.slurp(pidf)), "TERM")
      assert.are.same({ 1, "", ("matviews: could not connect to host 127.0.0.1 port %s: timeout expired\n"):format(port) },
        { r.code, r.out, r.err })
    end)
  end)

  describe("statement_timeout during a refresh", function()
    for _, strategy in ipairs({ "regular", "concurrent", "swap" }) do
      it("fails a " .. strategy .. " refresh and keeps the old contents", function()
        local name = "mv_st_" .. strategy
        slow_view(name, strategy, { statement_timeout_ms = 200 })
        mv.exec("INSERT INTO items VALUES (100, 'new') ON CONFLICT DO NOTHING")
        local data, rels = contents(name), relations()
        delay(30)
        local r = H.mv("--yes refresh " .. name)
        delay(0)
        mv.exec("DELETE FROM items WHERE id = 100")
        assert.are.equal(1, r.code)
        assert.matches(("^%%[1/1%%] refresh %s: failed in %%d+ ms: canceling statement due to statement timeout\n$"):format(name), r.out)
        local runs = P.runs("refresh", name)
        assert.are.same({ 3, "57014", 1 }, { runs[#runs].status, runs[#runs].meta.error.sqlstate, #runs[#runs].meta.attempts })
        assert.are.equal(data, contents(name))
        assert.are.same(rels, relations())
      end)
    end
  end)

  describe("the run tables locked during finalisation", function()
    it("waits record_timeout_ms, then writes the outcome on stderr", function()
      mv.definitions.save({ name = "mv_fin", sql = "SELECT 1 AS id, fault_gate()::text AS slept" })
      mv.exec("INSERT INTO fault_gate VALUES (true)")
      assert.are.equal("success", mv.create("mv_fin", { row_count_strategy = "none" }).status)
      mv.exec("DELETE FROM fault_gate")
      finally(function() mv.exec("INSERT INTO fault_gate VALUES (true)") end)
      local p = P.spawn("--config " .. H.q(config("record_timeout_ms = 200\n")) .. " --yes refresh mv_fin")
      local run = P.run_with_status("refresh", "mv_fin", 1)
      local locker = mv.connect("dbname=" .. H.dbname)
      locker:exec("BEGIN")
      locker:exec("LOCK TABLE mat_view_refresh_runs IN EXCLUSIVE MODE")
      mv.exec("INSERT INTO fault_gate VALUES (true)") -- the refresh ends only now, however slow the machine
      local r = P.wait(p) -- returns while the lock is still held
      locker:exec("ROLLBACK")
      locker:close()
      assert.are.equal(1, r.code)
      local lock = "canceling statement due to lock timeout"
      assert.matches(("^matviews: could not record the outcome of refresh run %d of mv_fin %%(%s%%): success in %%d+ ms\n$")
        :format(run.id, lock), r.err)
      assert.matches(("^%%[1/1%%] refresh mv_fin: failed: could not finalise run %d of mv_fin: %s\n$"):format(run.id, lock), r.out)
      -- the row stays running until reconcile fails it (its process is gone)
      assert.are.equal(1, mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", run.id)[1].status)
    end)

    it("does the same for a failed run, with its error", function()
      mv.definitions.save({ name = "mv_fin_bad", sql = "SELECT 1 / (SELECT count(*) FROM knobs WHERE fault_gate() IS NULL) AS x" })
      mv.exec("DELETE FROM fault_gate")
      finally(function() mv.exec("INSERT INTO fault_gate VALUES (true)") end)
      local p = P.spawn("--config " .. H.q(config("record_timeout_ms = 200\n")) .. " --yes create mv_fin_bad")
      local run = P.wait_for("the create run", function()
        return mv.query([[SELECT r.id FROM mat_view_create_runs r JOIN mat_view_definitions d
          ON d.id = r.mat_view_definition_id WHERE d.name = 'mv_fin_bad' AND r.status = 1]])[1]
      end)
      local locker = mv.connect("dbname=" .. H.dbname)
      locker:exec("BEGIN")
      locker:exec("LOCK TABLE mat_view_create_runs IN EXCLUSIVE MODE")
      mv.exec("INSERT INTO fault_gate VALUES (true)") -- the create ends only now
      local r = P.wait(p)
      locker:exec("ROLLBACK")
      locker:close()
      assert.are.equal(1, r.code)
      assert.matches(("^matviews: could not record the outcome of create run %d of mv_fin_bad %%(canceling statement due to lock timeout%%): "
        .. "failed in %%d+ ms: division by zero\n$"):format(run.id), r.err)
    end)
  end)
end)
