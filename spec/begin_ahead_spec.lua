-- A sequential refresh batch begins its next run as the current view
-- starts refreshing (recorder.c begin_ahead, configuration begin_ahead_ms):
-- the server inserts the row and takes the lock while the current view
-- refreshes, so the batch does not wait for them. A run begun ahead that
-- does not start in time (the current view runs longer than
-- begin_ahead_ms, or the batch is interrupted) is withdrawn: no row and no
-- lock are left for a view that never started.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local VIEWS = { "ba_a", "ba_b", "ba_c" }

-- A configuration file with begin_ahead_ms = ms (and a lock_timeout_ms
-- long enough that a REFRESH held by the gate waits, not retries).
local function config(ms)
  return H.write(H.tmpfile(".lua"), ("begin_ahead_ms = %d\nlock_timeout_ms = 60000\n"):format(ms))
end

-- The runs of the batch (ids above before), oldest first, with the row's
-- timestamps in microseconds since the epoch (created: when the row was
-- inserted, begun; started: when the run started).
local function runs_after(before)
  return mv.query([[SELECT d.name, r.id, r.status,
      (extract(epoch FROM r.created_at) * 1e6)::bigint AS created,
      (extract(epoch FROM r.started_at) * 1e6)::bigint AS started,
      (extract(epoch FROM r.finished_at) * 1e6)::bigint AS finished
    FROM mat_view_refresh_runs r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
    WHERE r.id > $1 ORDER BY d.name, r.id]], before)
end

local function max_id()
  return mv.query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
end

-- Runs `matviews ARGS` in the background while a session holds the gate
-- (so ba_a's REFRESH waits), calls while_held(p) meanwhile, then opens the
-- gate; returns the command's { code, out, err } once it exited.
local function gated(args, while_held)
  local gate = mv.connect("dbname=" .. H.dbname)
  gate:exec("BEGIN")
  gate:exec("LOCK TABLE ba_gate IN ACCESS EXCLUSIVE MODE")
  local p = P.spawn(args)
  local ok, err = pcall(function()
    P.wait_query("REFRESH MATERIALIZED VIEW%ba_a%", nil, "relation")
    while_held(p)
  end)
  if not ok then P.kill(P.pid(p), "TERM") end
  gate:exec("COMMIT")
  gate:close()
  local r = P.wait(p)
  assert(ok, err)
  return r
end

local function advisory_locks()
  return mv.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")[1].n
end

describe("a refresh batch's next run begun ahead", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE ba_src AS SELECT g AS id FROM generate_series(1, 3) g")
    mv.exec("CREATE TABLE ba_gate (x int)")
    -- ba_a reads the gate: a session that locks it holds ba_a's REFRESH
    mv.definitions.save({ name = "ba_a", sql = "SELECT id FROM ba_src WHERE (SELECT count(*) FROM ba_gate) >= 0" })
    mv.definitions.save({ name = "ba_b", sql = "SELECT id FROM ba_src" })
    mv.definitions.save({ name = "ba_c", sql = "SELECT id FROM ba_src" })
    for _, n in ipairs(VIEWS) do assert.are.equal("success", mv.create(n).status) end
  end)

  it("inserts the next run's row while the current view refreshes, one row per view", function()
    local before = max_id()
    local r = H.mv("--config " .. config(600000) .. " --yes refresh ba_a ba_b ba_c")
    assert.are.equal(0, r.code, r.err)
    local runs = runs_after(before)
    assert.are.same(VIEWS, { runs[1].name, runs[2].name, runs[3].name })
    assert.are.equal(3, #runs)
    for _, run in ipairs(runs) do assert.are.equal(2, run.status) end
    -- each next row was written before the one before it was finalised,
    -- and says it started after (runs of a batch do not overlap)
    assert.is_true(runs[2].created < runs[1].finished, "ba_b begun before ba_a finished")
    assert.is_true(runs[3].created < runs[2].finished, "ba_c begun before ba_b finished")
    assert.is_true(runs[2].started >= runs[1].finished and runs[3].started >= runs[2].finished, "a run started before")
    assert.are.equal(0, advisory_locks())
  end)

  it("begins nothing ahead with begin_ahead_ms = 0", function()
    local before = max_id()
    local r = H.mv("--config " .. config(0) .. " --yes refresh ba_a ba_b")
    assert.are.equal(0, r.code, r.err)
    local runs = runs_after(before)
    assert.are.equal(2, #runs)
    assert.is_true(runs[2].created >= runs[1].finished, "ba_b begun after ba_a finished")
  end)

  it("withdraws the next run when the current view runs longer than begin_ahead_ms", function()
    local before = max_id()
    local function b_rows()
      return mv.query([[SELECT count(*)::int AS n FROM mat_view_refresh_runs r JOIN mat_view_definitions d
        ON d.id = r.mat_view_definition_id WHERE d.name = 'ba_b' AND r.id > $1]], before)[1].n
    end
    local gone_at
    local r = gated("--config " .. config(6000) .. " --yes refresh ba_a ba_b", function()
      -- ba_a's REFRESH waits on the gate: ba_b's row begun ahead is there,
      -- and goes after begin_ahead_ms (6 s: seen first even on a slow, loaded machine), with its lock
      P.wait_for("ba_b's run begun ahead", function() return b_rows() == 1 and advisory_locks() == 2 end)
      P.wait_for("ba_b's run begun ahead to be withdrawn", function()
        return b_rows() == 0 and advisory_locks() == 1 -- ba_a's alone
      end)
      gone_at = mv.query("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint AS t")[1].t
    end)
    assert.are.equal(0, r.code, r.err)
    local runs = runs_after(before)
    assert.are.same({ "ba_a", "ba_b" }, { runs[1].name, runs[2].name })
    assert.are.same({ 2, 2 }, { runs[1].status, runs[2].status })
    assert.are.equal(2, #runs)
    -- begun again when it started (ba_a held by the gate until after this)
    assert.is_true(runs[2].created > gone_at, "ba_b begun again after it was withdrawn")
    assert.is_true(runs[2].started >= runs[1].finished, "runs of a batch do not overlap")
    assert.are.equal(0, advisory_locks())
  end)

  it("withdraws the next run when the batch is interrupted: no row, no lock for a view not started", function()
    local before = max_id()
    local r = gated("--config " .. config(600000) .. " --yes refresh ba_a ba_b ba_c", function(p)
      -- ba_b begun ahead: its row is there while ba_a waits
      P.wait_for("ba_b's run begun ahead", function()
        return mv.query([[SELECT 1 FROM mat_view_refresh_runs r JOIN mat_view_definitions d
          ON d.id = r.mat_view_definition_id WHERE d.name = 'ba_b' AND r.id > $1 AND r.status = 1]], before)[1]
      end)
      assert.is_true(P.kill(P.pid(p), "INT"))
      P.wait_for("the interrupted batch to exit", function() return H.slurp(p.code) ~= "" end)
    end)
    assert.are.equal(130, r.code, r.err)
    assert.matches("interrupted: 2 not started\n$", r.err)
    local runs = runs_after(before)
    assert.are.equal(1, #runs)
    assert.are.same({ "ba_a", 3 }, { runs[1].name, runs[1].status })
    assert.are.equal(0, advisory_locks())
  end)
end)
