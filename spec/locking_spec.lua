-- Per-view locking and retries: two jobs on one view never overlap, a job
-- that cannot get the view's lock in time fails naming who holds it, and
-- lock timeouts and a lost connection are retried with backoff, each attempt
-- in the run's meta, while errors a retry cannot fix are not.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"
local sys = mv.core.sys

-- mv_slow takes a second, and waits besides until lk_gate holds a row: a
-- spec that must catch it running closes the gate (gate(false)) and opens it
-- once it has seen what it waits for, however slow the machine.
local SLOW = "SELECT 1 AS id, pg_sleep(1)::text AS slept FROM lk_gate()"
local function gate(open) mv.exec(open and "INSERT INTO lk_gate VALUES (true)" or "DELETE FROM lk_gate") end

describe("per-view locking and retries", function()
  setup(function()
    H.fresh_db()
    mv.init()
    P.items()
    mv.exec("CREATE TABLE lk_gate (open boolean)")
    mv.exec([[CREATE FUNCTION lk_gate() RETURNS int LANGUAGE plpgsql AS
      $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM lk_gate) LOOP PERFORM pg_sleep(0.05); END LOOP; RETURN 0; END $$]])
    gate(true)
    mv.definitions.save({ name = "mv_items", sql = "SELECT id, v FROM items", unique_index_columns = { "id" } })
    mv.definitions.save({ name = "mv_slow", sql = SLOW })
    mv.definitions.save({ name = "mv_other", sql = "SELECT 2 AS id" })
    assert.is_true(mv.services.create_view("mv_items").success)
    assert.is_true(mv.services.create_view("mv_slow", { no_data = true }).success)
    assert.is_true(mv.services.create_view("mv_other").success)
  end)

  it("fails a job that waited lock_wait_ms, naming the pid and host of the running one", function()
    gate(false)
    finally(function() gate(true) end)
    local p = P.spawn("-e " .. H.q('mv.refresh("mv_slow")'))
    local holder = P.run_with_status("refresh", "mv_slow", 1)
    P.wait_for("the holder's lock", function()
      return #mv.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1 AND granted",
        holder.backend_pid) > 0
    end)
    local run = mv.refresh("mv_slow", { lock_wait_ms = 100 })
    assert.are.equal("failed", run.status)
    assert.are.equal(("mv_slow: refresh already running in pid %d on %s"):format(holder.process_pid, sys.hostname()),
      run.error)
    local row = mv.query("SELECT status, error FROM mat_view_refresh_runs WHERE id = $1", run.id)[1]
    assert.are.same({ status = 3, error = run.error }, row)
    -- another view is not held up
    assert.are.equal("success", mv.refresh("mv_other", { lock_wait_ms = 100 }).status)
    gate(true)
    assert.are.equal(0, P.wait(p).code)
    assert.are.equal(2, mv.query("SELECT status FROM mat_view_refresh_runs WHERE id = $1", holder.id)[1].status)
  end)

  it("makes two processes refreshing one view take turns", function()
    local a = P.spawn("-e " .. H.q('mv.refresh("mv_slow")'))
    local b = P.spawn("-e " .. H.q('mv.refresh("mv_slow")'))
    assert.are.equal(0, P.wait(a).code)
    assert.are.equal(0, P.wait(b).code)
    local rows = P.runs("refresh", "mv_slow")
    local x, y = rows[#rows - 1], rows[#rows]
    assert.are.same({ 2, 2 }, { x.status, y.status })
    local xa, ya = x.meta.attempts[1], y.meta.attempts[1]
    -- the service calls (ISO UTC timestamps compare as text) do not overlap
    assert.is_true(xa.finished_at <= ya.started_at or ya.finished_at <= xa.started_at)
  end)

  it("makes two processes swapping one slow view take turns and leave exactly one relation", function()
    mv.definitions.save({ name = "mv_swapped", sql = "SELECT 1 AS id, pg_sleep(0.5)::text AS slept",
      refresh_strategy = "swap" })
    assert.is_true(mv.services.create_view("mv_swapped", { no_data = true }).success)
    local a = P.spawn("-e " .. H.q('print(mv.refresh("mv_swapped").status)'))
    local b = P.spawn("-e " .. H.q('print(mv.refresh("mv_swapped").status)'))
    assert.are.equal("success\n", P.wait(a).out)
    assert.are.equal("success\n", P.wait(b).out)
    local rows = P.runs("refresh", "mv_swapped")
    assert.are.equal(2, #rows)
    assert.are.same({ "swap", "swap" }, { rows[1].meta.strategy, rows[2].meta.strategy })
    local xa, ya = rows[1].meta.attempts[1], rows[2].meta.attempts[1]
    assert.is_true(xa.finished_at <= ya.started_at or ya.finished_at <= xa.started_at)
    assert.are.same({ { relname = "mv_swapped" } },
      mv.query("SELECT relname FROM pg_class WHERE relname LIKE '%mv\\_swapped%' AND relkind = 'm'"))
  end)

  it("keys the lock on the view name the same way everywhere", function()
    local key = mv.query("SELECT hashtextextended('matviews:' || 'public.mv_items', 0) AS k")[1].k
    local other = mv.connect("dbname=" .. H.dbname)
    other:query("SELECT pg_advisory_lock($1)", key)
    local run = mv.refresh("mv_items", { lock_wait_ms = 0 })
    other:close()
    assert.are.equal("failed", run.status)
    assert.matches("^mv_items: already locked by backend pid %d+ %(not a recorded run%)$", run.error)
  end)

  it("retries a lock timeout with backoff and succeeds on a later attempt", function()
    -- the reader holds its lock until a refresh has waited for it and given
    -- up (the first attempt), however late that attempt comes
    local holder = P.spawn("-e " .. H.q([[
      mv.transaction(function(c)
        c:query("SELECT * FROM mv_items")
        local waited = false
        for _ = 1, 1000 do
          local w = c:query("SELECT 1 FROM pg_locks WHERE relation = 'mv_items'::regclass AND NOT granted")[1]
          if w then waited = true elseif waited then return end
          mv.core.sys.sleep_ms(20)
        end
      end)]]))
    P.wait_for("the reader's lock on mv_items", function()
      return #mv.query([[SELECT 1 FROM pg_locks WHERE relation = 'mv_items'::regclass AND granted
        AND pid <> pg_backend_pid()]]) > 0
    end)
    local run = mv.refresh("mv_items", { lock_timeout_ms = 1000, retry = { attempts = 10, base_ms = 200, max_ms = 400 } })
    assert.are.equal(0, P.wait(holder).code)
    assert.are.equal("success", run.status)
    local attempts = run.meta.attempts
    assert.is_true(#attempts >= 2)
    assert.are.same({ attempt = 1, status = "error", sqlstate = "55P03", reason = "lock_not_available" },
      { attempt = attempts[1].attempt, status = attempts[1].status, sqlstate = attempts[1].error.sqlstate,
        reason = attempts[1].retry_reason })
    assert.is_true(attempts[1].retry_in_ms >= 100 and attempts[1].retry_in_ms <= 200)
    assert.are.equal("updated", attempts[#attempts].status)
    assert.is_nil(attempts[#attempts].retry_reason)
    local row = mv.query("SELECT meta FROM mat_view_refresh_runs WHERE id = $1", run.id)[1]
    assert.are.equal(#attempts, #mv.json.decode(row.meta).attempts)
  end)

  it("gives up after the configured attempts and records each", function()
    local holder = mv.connect("dbname=" .. H.dbname)
    holder:exec("BEGIN")
    holder:query("SELECT * FROM mv_items")
    local run = mv.refresh("mv_items", { lock_timeout_ms = 50, retry = { attempts = 2, base_ms = 10, max_ms = 10 } })
    holder:exec("ROLLBACK")
    holder:close()
    assert.are.equal("failed", run.status)
    assert.are.equal("canceling statement due to lock timeout", run.error)
    assert.are.equal(2, #run.meta.attempts)
    assert.are.same({ "lock_not_available" }, { run.meta.attempts[1].retry_reason, run.meta.attempts[2].retry_reason })
  end)

  it("retries a refresh whose connection was lost, on a new connection", function()
    gate(false) -- the first attempt runs until the killer has seen it (and opened the gate)
    finally(function() gate(true) end)
    local killer = P.spawn("-e " .. H.q([=[
      for _ = 1, 1500 do
        local r = mv.query([[SELECT pid FROM pg_stat_activity WHERE datname = current_database()
          AND state = 'active' AND query LIKE 'REFRESH MATERIALIZED VIEW%mv_slow%']])
        if r[1] then
          mv.query("SELECT pg_terminate_backend($1)", r[1].pid)
          mv.exec("INSERT INTO lk_gate VALUES (true)") -- the next attempt may finish
          print("terminated"); return
        end
        mv.core.sys.sleep_ms(20)
      end]=]))
    local before = mv.conn():info().pid
    local run = mv.refresh("mv_slow", { retry = { attempts = 3, base_ms = 20, max_ms = 20 } })
    assert.are.equal("terminated\n", P.wait(killer).out)
    assert.are.equal("success", run.status)
    assert.are.equal(2, #run.meta.attempts)
    assert.are.equal("connection_lost", run.meta.attempts[1].retry_reason)
    assert.matches("terminating connection due to administrator command", run.meta.attempts[1].error.message)
    assert.are.equal("updated", run.meta.attempts[2].status)
    assert.are_not.equal(before, mv.conn():info().pid) -- the default connection was replaced
    assert.are.equal(1, mv.query("SELECT 1 AS one")[1].one)
  end)

  it("does not retry an error that retrying cannot fix", function()
    mv.definitions.save({ name = "mv_never", sql = "SELECT 1 AS id" })
    local run = mv.refresh("mv_never", { retry = { attempts = 5, base_ms = 10 } })
    assert.are.equal("failed", run.status)
    assert.are.equal(1, #run.meta.attempts)
    assert.is_nil(run.meta.attempts[1].retry_reason)
  end)

  it("applies the definition's lock_timeout_ms and statement_timeout_ms", function()
    mv.definitions.save({ name = "mv_slow", sql = SLOW,
      options = { statement_timeout_ms = 100 } })
    local run = mv.refresh("mv_slow")
    assert.are.equal("failed", run.status)
    assert.are.equal("canceling statement due to statement timeout", run.error)
    -- the caller's session keeps its own settings
    assert.are.equal("0", mv.query("SELECT current_setting('statement_timeout') AS s")[1].s)
    mv.definitions.save({ name = "mv_slow", sql = SLOW, options = {} })
  end)
end)
