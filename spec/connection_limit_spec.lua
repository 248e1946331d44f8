-- Fault: more parallel refresh workers than the server has connections
-- for. A cluster of this spec's own with max_connections = 10 (the shared
-- one has 200) and 60 views in three layers: `refresh --all --parallel 16`
-- and mv.refresh_all{ parallel = 16 } open what the server allows, say so
-- once on stderr and go on with fewer workers; every view gets a run row,
-- none fails for lack of a connection.
local H = require "spec.helper"
local P = require "spec.proc_helper"
local mv = require "matviews"

local PORT = 55493

-- The 60 views: cl_a_1..30 read items (every third regular, concurrent,
-- swap; cl_a_I fails with division by zero while items holds id -I),
-- cl_b_1..20 read two a views each, cl_c_1..10 two b views each.
local function definitions()
  local defs = {}
  for i = 1, 30 do
    defs[#defs + 1] = { name = "cl_a_" .. i, refresh_strategy = ({ "regular", "concurrent", "swap" })[i % 3 + 1],
      unique_index_columns = i % 3 == 1 and { "id" } or nil,
      sql = ("SELECT id, CASE WHEN id = -%d THEN v / (v - v) ELSE v + %d END AS v FROM items, pg_sleep(0.02)"):format(i, i) }
  end
  for i = 1, 20 do
    defs[#defs + 1] = { name = "cl_b_" .. i, sql = ("SELECT x.id, x.v + y.v AS v FROM cl_a_%d x JOIN cl_a_%d y USING (id)")
      :format(i, i + 10) }
  end
  for i = 1, 10 do
    defs[#defs + 1] = { name = "cl_c_" .. i, sql = ("SELECT x.id, x.v + y.v AS v FROM cl_b_%d x JOIN cl_b_%d y USING (id)")
      :format(i, i + 10) }
  end
  return defs
end

describe("a parallel refresh with more workers than the server has connections for", function()
  local cluster, conn

  -- The newest run of each view after run id `after`: { [view] = row }.
  local function runs_after(after)
    local by = {}
    for _, r in ipairs(conn:query([[SELECT d.name, r.id, r.status, r.error FROM mat_view_refresh_runs r
        JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id WHERE r.id > $1 ORDER BY r.id]], after)) do
      by[r.name] = r
    end
    return by
  end

  local function last_run_id()
    return conn:query("SELECT coalesce(max(id), 0) AS m FROM mat_view_refresh_runs")[1].m
  end

  -- The sum of v of a view, as its SQL computes it now.
  local function sum_of(name)
    return conn:query(("SELECT sum(v)::bigint AS s FROM %s"):format(name))[1].s
  end

  setup(function()
    H.fresh_db()
    cluster = P.own_cluster(PORT, "max_connections = 10")
    conn = mv.connect(cluster.dsn)
    mv.init(conn)
    conn:exec("CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)")
    conn:exec("INSERT INTO items SELECT g, g FROM generate_series(1, 50) g")
    for _, d in ipairs(definitions()) do
      mv.definitions.save(d, conn)
      local r = mv.jobs.create(d.name, { conn = conn })
      assert.are.equal("success", r.status, r.error)
    end
    conn:exec("UPDATE items SET v = v * 2") -- the refresh changes every view
  end)

  teardown(function()
    if conn then conn:close() end
    if cluster then cluster.destroy() end
  end)

  it("refresh --all --parallel 16: every view refreshed, the refusal said once", function()
    local before = last_run_id()
    local p = P.spawn("--dsn " .. H.q(cluster.dsn) .. " --yes refresh --all --parallel 16")
    local r = P.wait(p, 120000)
    assert.are.equal(0, r.code, r.err .. r.out)
    assert.matches("^matviews: %d of 16 refresh workers could connect %([^\n]*too many clients[^\n]*%); going on with %d\n$", r.err)
    local workers = tonumber(r.err:match("^matviews: (%d+)"))
    assert.is_true(workers >= 1 and workers < 16, r.err)
    local runs = runs_after(before)
    for _, d in ipairs(definitions()) do
      assert.are.same({ d.name, 2 }, { d.name, runs[d.name] and runs[d.name].status }, runs[d.name] and runs[d.name].error)
    end
    assert.are.equal(60, select(2, r.out:gsub("success in %d+ ms", "")), r.out)
    -- the contents are the new ones, down to the last layer
    assert.are.equal(conn:query("SELECT sum(v + 1)::bigint AS s FROM items")[1].s, sum_of("cl_a_1"))
    assert.are.equal(sum_of("cl_a_1") + sum_of("cl_a_11"), sum_of("cl_b_1"))
    assert.are.equal(sum_of("cl_b_1") + sum_of("cl_b_11"), sum_of("cl_c_1"))
  end)

  it("mv.refresh_all{ parallel = 16 }: a failing view and its downstream get failed runs, the rest succeed", function()
    conn:exec("INSERT INTO items VALUES (-5, 1)") -- cl_a_5 divides by zero
    local before = last_run_id()
    local r = H.mv("--dsn " .. H.q(cluster.dsn) .. " -e " .. H.q([[
      local r = mv.refresh_all({ parallel = 16 })
      print(r.total, r.succeeded, r.failed, r.skipped)]]))
    conn:exec("DELETE FROM items WHERE id = -5")
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("60\t57\t1\t2\n", r.out)
    assert.matches("^matviews: %d of 16 refresh workers could connect %([^\n]*%); going on with %d\n$", r.err)
    local runs = runs_after(before)
    local failed = {}
    for _, d in ipairs(definitions()) do
      local run = runs[d.name]
      assert.is_not_nil(run, d.name .. " has no run row")
      if run.status ~= 2 then failed[d.name] = run.error end
    end
    assert.are.same({ cl_a_5 = "division by zero", cl_b_5 = "not refreshed: upstream cl_a_5 failed",
      cl_c_5 = "not refreshed: upstream cl_a_5 failed" }, failed)
  end)

  -- Holds connections until `free` slots of the 10 are left; returns them.
  -- Backends of earlier commands must be gone first: only this spec's
  -- connection and its recorder are left.
  local function leave_free(free)
    local mine = { conn:info().pid, mv.jobs.recorder(conn):info().pid }
    P.wait_for("the backends of earlier commands to end", function()
      return conn:query([[SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'
        AND pid NOT IN ($1, $2)]], mine[1], mine[2])[1].n == 0
    end)
    local used = #mine
    local held = {}
    for i = 1, 10 - used - free do held[i] = mv.connect(cluster.dsn) end
    return held
  end

  it("runs the views itself when no worker can connect, and says so once", function()
    local held = leave_free(2) -- the command's two connections: none for a worker
    local before = last_run_id()
    local r = H.mv("--dsn " .. H.q(cluster.dsn) .. " --yes refresh cl_a_1 cl_a_2 cl_a_3 cl_b_1 --parallel 16")
    for _, c in ipairs(held) do c:close() end
    assert.are.equal(0, r.code, r.err .. r.out)
    -- the refused worker's own first connection may not be gone yet when
    -- the command opens its second: then it waits for it, and says so
    local first, rest = r.err:match("^([^\n]*\n)(.*)$")
    assert.matches("^matviews: 0 of 4 refresh workers could connect %([^\n]*too many clients[^\n]*%); refreshing here, one at a time\n$", first)
    assert.is_true(rest == "" or rest == "matviews: the server has no free connection slot; trying again for up to 30 s\n", r.err)
    local runs = runs_after(before)
    for _, name in ipairs({ "cl_a_1", "cl_a_2", "cl_a_3", "cl_b_1" }) do
      assert.are.same({ name, 2 }, { name, runs[name] and runs[name].status })
    end
  end)

  it("gives every view a failed run when not even the command's second connection can be had", function()
    local cfg = H.write(H.tmpfile(".lua"), "connect_wait_ms = 300\n")
    local held = leave_free(1)
    local before = last_run_id()
    local r = H.mv("--config " .. H.q(cfg) .. " --dsn " .. H.q(cluster.dsn)
      .. " --yes refresh cl_a_1 cl_a_2 cl_b_1 --parallel 4")
    for _, c in ipairs(held) do c:close() end
    assert.are.equal(1, r.code, r.err .. r.out)
    assert.matches("^matviews: 0 of 3 refresh workers could connect %([^\n]*%); refreshing here, one at a time\n"
      .. "matviews: the server has no free connection slot; trying again for up to 300 ms\n$", r.err)
    local runs = runs_after(before)
    assert.matches("too many clients", runs.cl_a_1.error)
    assert.matches("too many clients", runs.cl_a_2.error)
    assert.are.same({ 3, 3, 3, "not refreshed: upstream cl_a_1 failed" },
      { runs.cl_a_1.status, runs.cl_a_2.status, runs.cl_b_1.status, runs.cl_b_1.error })
    assert.matches("refresh cl_a_1: failed in 0 ms: [^\n]*too many clients", r.out)
  end)

  it("worker --concurrency 16: the processes the server has slots for run every job, said once", function()
    local held = leave_free(6) -- the parent's two connections and two children's
    conn:exec("DELETE FROM matviews_jobs")
    for i = 1, 30 do
      local r = H.mv("--dsn " .. H.q(cluster.dsn) .. " enqueue refresh cl_a_" .. i)
      assert.are.equal(0, r.code, r.err)
    end
    local p = P.spawn("--dsn " .. H.q(cluster.dsn) .. " worker --concurrency 16 --poll-ms 100")
    P.wait_for("every job to be done", function()
      return conn:query("SELECT count(*)::int AS n FROM matviews_jobs WHERE status = 2")[1].n == 30
    end, 60000)
    P.wait_for("the refusal to be said", function() return H.slurp(p.err) ~= "" end)
    P.kill(P.pid(p), "TERM")
    local r = P.wait(p)
    for _, c in ipairs(held) do c:close() end
    assert.are.equal(143, r.code, r.err)
    assert.are.equal("matviews: the server has no free connection slot for every worker process; going on with fewer\n", r.err)
    assert.are.equal(30, select(2, r.out:gsub("job %d+ refresh [%w_.]*cl_a_%d+: success", "")), r.out)
  end)
end)
