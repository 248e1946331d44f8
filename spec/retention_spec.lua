-- Retention: keep_last, keep_days, keep_failures, per-view override and
-- custom functions, on fixture runs with the exact survivors checked; and
-- `matviews prune [--dry-run]`.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- Fixture runs: { id, table, view, status, age in days }.
local RUNS = {
  { 1, "refresh", "mv_a", 2, 10 }, { 2, "refresh", "mv_a", 3, 9 }, { 3, "refresh", "mv_a", 2, 8 },
  { 4, "refresh", "mv_a", 2, 3 }, { 5, "refresh", "mv_a", 1, 20 }, { 6, "refresh", "mv_a", 2, 1 },
  { 7, "refresh", "mv_a", 3, 0.5 },
  { 11, "create", "mv_a", 2, 30 }, { 12, "create", "mv_a", 2, 1 },
  { 21, "refresh", "mv_b", 2, 4 }, { 22, "refresh", "mv_b", 3, 4 }, { 23, "refresh", "mv_b", 0, 40 },
}

-- Puts the fixture runs back (every run table emptied first).
local function reset_runs()
  for _, t in ipairs({ "create", "refresh", "delete" }) do mv.exec("DELETE FROM mat_view_" .. t .. "_runs") end
  for _, r in ipairs(RUNS) do
    mv.exec(([[INSERT INTO mat_view_%s_runs (id, mat_view_definition_id, status, created_at)
      SELECT $1, id, $2, now() - $3 * interval '1 day' FROM mat_view_definitions WHERE name = $4]]):format(r[2]),
      r[1], r[4], r[5], r[3])
  end
end

-- The ids left in the run tables, sorted.
local function survivors()
  local out = {}
  for _, r in ipairs(mv.query([[SELECT id FROM mat_view_refresh_runs UNION ALL
      SELECT id FROM mat_view_create_runs UNION ALL SELECT id FROM mat_view_delete_runs ORDER BY 1]])) do
    out[#out + 1] = r.id
  end
  return out
end

-- Survivors after pruning the fixture runs with a global policy.
local function prune_with(policy, opts)
  reset_runs()
  opts = opts or {}
  opts.policy = policy
  local r = mv.prune(opts)
  return survivors(), r
end

describe("retention", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ('mv_a', 'SELECT 1'), ('mv_b', 'SELECT 1')")
  end)

  it("keep_last keeps the N newest successful runs per view and table, failures and running ones", function()
    local ids, r = prune_with({ keep_last = 1 })
    assert.are.same({ 2, 5, 6, 7, 12, 21, 22, 23 }, ids)
    assert.are.equal(4, r.deleted)
    local items = {}
    for _, it in ipairs(r.items) do items[#items + 1] = { it.table, it.view, it.delete, it.keep } end
    assert.are.same({ { "mat_view_create_runs", "mv_a", 1, 1 }, { "mat_view_refresh_runs", "mv_a", 3, 4 },
      { "mat_view_refresh_runs", "mv_b", 0, 3 } }, items)
    assert.are.same({ 2, 4, 5, 6, 7, 11, 12, 21, 22, 23 }, (prune_with({ keep_last = 2, keep_failures = true })))
  end)

  it("keep_days keeps what is younger, whatever its status", function()
    assert.are.same({ 2, 5, 6, 7, 12, 22, 23 }, (prune_with({ keep_days = 2 })))
    assert.are.same({ 5, 6, 7, 12, 23 }, (prune_with({ keep_days = 2, keep_failures = false })))
  end)

  it("keeps a run when any rule keeps it", function()
    assert.are.same({ 4, 5, 6, 7, 12, 21, 22, 23 }, (prune_with({ keep_last = 1, keep_days = 5, keep_failures = false })))
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 11, 12, 21, 22, 23 }, (prune_with({ keep_failures = false })))
  end)

  it("lets a view's own policy replace the global one", function()
    mv.exec([[UPDATE mat_view_definitions SET retention = '{"keep_last": 0, "keep_failures": false}' WHERE name = 'mv_b']])
    finally(function() mv.exec("UPDATE mat_view_definitions SET retention = NULL") end)
    assert.are.same({ 2, 4, 5, 6, 7, 11, 12, 23 }, (prune_with({ keep_last = 2 })))
  end)

  it("runs a custom function, which sees each view's runs of one table, newest first", function()
    local seen = {}
    local ids = prune_with(function(runs, ctx)
      local list = {}
      for i, r in ipairs(runs) do list[i] = r.id .. ":" .. r.status end
      seen[#seen + 1] = ctx.view .. " " .. ctx.op .. " " .. table.concat(list, ",")
      local keep = {}
      for _, r in ipairs(runs) do if r.id % 2 == 1 and r.age_s > 86400 * 2 then keep[#keep + 1] = r end end
      return keep
    end)
    assert.are.same({ 1, 3, 5, 11, 21, 23 }, ids)
    table.sort(seen)
    assert.are.same({ "mv_a create 12:success,11:success", "mv_a delete ", "mv_a refresh 7:failed,6:success,4:success,3:success,2:failed,1:success,5:running",
      "mv_b create ", "mv_b delete ", "mv_b refresh 22:failed,21:success,23:pending" }, seen)
  end)

  it("reports an error inside a custom policy with the view, deleting nothing", function()
    reset_runs()
    local ok, err = pcall(mv.prune, { policy = function(_, ctx) if ctx.view == "mv_b" then error("no way", 0) end return {} end })
    assert.is_false(ok)
    assert.are.equal("retention policy of mv_b (mat_view_create_runs): no way", err.message)
    assert.are.equal(#RUNS, #survivors())
  end)
end)

describe("matviews prune", function()
  local cfg
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("INSERT INTO mat_view_definitions (name, sql) VALUES ('mv_a', 'SELECT 1'), ('mv_b', 'SELECT 1')")
    cfg = H.write(H.tmpfile(".lua"), "retention = { keep_last = 1 }\n")
  end)

  it("--dry-run reports per table and view what it would delete, and deletes nothing", function()
    reset_runs()
    local r = H.mv("prune --dry-run --config " .. cfg)
    assert.are.equal(0, r.code)
    assert.are.equal([[
table                  view  would delete  kept
---------------------  ----  ------------  ----
mat_view_create_runs   mv_a             1     1
mat_view_refresh_runs  mv_a             3     4
would delete 4 runs
]], r.out)
    assert.are.equal(#RUNS, #survivors())
  end)

  it("asks, then deletes in batches", function()
    reset_runs()
    local r = H.tty("prune --batch 1 --config " .. cfg, { stdin = "\n" })
    assert.are.equal(3, r.code)
    assert.are.equal("prune deletes 4 runs\nProceed? [y/N] aborted; nothing deleted\n", r.err)
    assert.are.equal(#RUNS, #survivors())
    r = H.tty("prune --json --batch 1 --config " .. cfg, { stdin = "y\n" })
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.equal(4, doc.deleted)
    assert.are.same({ 2, 5, 6, 7, 12, 21, 22, 23 }, survivors())
    assert.are.equal("deleted 0 runs\n", H.mv("prune --yes --config " .. cfg).out)
  end)

  it("uses a custom policy declared in a definition file", function()
    local dir = H.tmpfile("_retention_defs")
    os.execute("mkdir -p " .. dir)
    H.write(dir .. "/a.lua", 'view "mv_a" { sql = "SELECT 1", retention = function(runs) return { runs[1] } end }\n'
      .. 'view "mv_b" { sql = "SELECT 1" }\n')
    assert.are.equal(0, H.mv("apply --config " .. cfg .. " --definitions " .. dir).code)
    reset_runs()
    local r = H.mv("prune --yes --config " .. cfg .. " --definitions " .. dir)
    assert.are.equal("", r.err)
    assert.are.same({ 5, 7, 12, 21, 22, 23 }, survivors())
  end)
end)
