-- What a sequential refresh honours, `refresh --parallel N` honours too:
-- --if-changed / --no-if-changed and --on-overlap reach the pool workers
-- (matviews.parallel) and the queue's worker (`enqueue`, `worker`), and the
-- live progress line ticks on a terminal while the workers run.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- name -> the last refresh run's { status, skipped }.
local function last_runs()
  local out = {}
  for _, r in ipairs(mv.query([[SELECT DISTINCT ON (d.name) d.name, r.status, r.meta->>'skipped' AS skipped
      FROM mat_view_refresh_runs r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
      ORDER BY d.name, r.id DESC]])) do
    out[r.name] = { r.status, r.skipped ~= mv.null and r.skipped or nil }
  end
  return out
end

-- `refresh ARGS --yes --json`, decoded as name -> the line of the view.
local function refresh(args)
  local r = H.mv("refresh " .. args .. " --yes --json")
  assert.are.equal(0, r.code, r.err .. r.out)
  local out = {}
  for _, v in ipairs(cjson.decode(r.out)) do out[v.view] = v end
  return out
end

describe("refresh --parallel", function()
  local dir
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE po_a (x int)")
    mv.exec("CREATE TABLE po_b (x int)")
    mv.exec("INSERT INTO po_a VALUES (1)")
    mv.exec("INSERT INTO po_b VALUES (1)")
    dir = H.defs_dir({ ["v.lua"] = [[
view "po_one" { sql = "SELECT sum(x) AS s FROM po_a", refresh_when = "changed" }
view "po_two" { sql = "SELECT sum(x) AS s FROM po_b", refresh_when = "changed" }
view "po_top" { sql = "SELECT s FROM po_one", refresh_when = "changed", depends_on = { "po_one" } }
]] })
    local r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.err .. r.out)
  end)

  it("skips unchanged views on the workers with --if-changed, and refreshes what changed and what reads it", function()
    refresh("--all --parallel 2") -- each view's baseline after tracking began
    local out = refresh("--all --parallel 2 --if-changed")
    for _, v in ipairs({ "po_one", "po_two", "po_top" }) do
      assert.are.same({ "success", "unchanged" }, { out[v].status, out[v].meta and out[v].meta.skipped }, v)
    end
    assert.are.same({ po_one = { 2, "unchanged" }, po_two = { 2, "unchanged" }, po_top = { 2, "unchanged" } }, last_runs())
    mv.exec("UPDATE po_a SET x = 5")
    local r = H.mv("refresh --all --parallel 2 --if-changed --yes")
    assert.are.equal(0, r.code, r.err)
    assert.matches("refresh po_two: skipped: no source changed since the last refresh\n", r.out)
    assert.matches("refresh po_one: success in %d+ ms", r.out)
    assert.matches("refresh po_top: success in %d+ ms", r.out) -- po_one was refreshed since its snapshot
    assert.are.same({ po_one = { 2 }, po_two = { 2, "unchanged" }, po_top = { 2 } }, last_runs())
    assert.are.same({ { s = 5 } }, mv.query("SELECT s FROM po_top"))
  end)

  it("follows refresh_when = \"changed\" on the workers, and --no-if-changed overrides it", function()
    assert.are.equal("unchanged", refresh("--all --parallel 2").po_two.meta.skipped)
    local out = refresh("--all --parallel 2 --no-if-changed")
    for _, v in ipairs({ "po_one", "po_two", "po_top" }) do assert.is_nil(out[v].meta, v) end
    assert.are.same({ po_one = { 2 }, po_two = { 2 }, po_top = { 2 } }, last_runs())
  end)

  it("records a view busy elsewhere as skipped with --on-overlap skip", function()
    local holder <close> = mv.connect("dbname=" .. H.dbname)
    holder:exec("SELECT pg_advisory_lock(hashtextextended('matviews:public.po_two', 0))")
    local out = refresh("--all --parallel 2 --on-overlap skip --no-if-changed")
    assert.are.same({ "success", "running", "skip" }, { out.po_two.status, out.po_two.meta.skipped, out.po_two.meta.on_overlap })
    assert.is_nil(out.po_one.meta)
    local r = H.mv("refresh po_two po_one --parallel 2 --on-overlap skip --no-if-changed --yes")
    assert.are.equal(0, r.code, r.err)
    assert.matches("refresh po_two: skipped: another run is in progress\n", r.out)
    assert.are.same({ po_one = { 2 }, po_two = { 2, "running" }, po_top = { 2 } }, last_runs())
    -- without the option the default (wait) applies: it waits (here 0 ms), then fails
    local cfg = H.write(H.tmpfile(".lua"), "lock_wait_ms = 0\n")
    r = H.mv("--config " .. H.q(cfg) .. " refresh po_two --parallel 2 --no-if-changed --yes")
    assert.are.equal(1, r.code, r.out)
    assert.matches("refresh po_two: failed", r.out)
    holder:exec("SELECT pg_advisory_unlock_all()")
  end)

  it("passes --if-changed and --on-overlap through the queue to the worker", function()
    mv.exec("TRUNCATE matviews_jobs")
    local r = H.mv("enqueue refresh po_two --if-changed")
    assert.are.equal(0, r.code, r.err)
    r = H.mv("worker --once")
    assert.are.equal(0, r.code, r.err .. r.out)
    assert.are.same({ 2, "unchanged" }, last_runs().po_two)
    local holder <close> = mv.connect("dbname=" .. H.dbname)
    holder:exec("SELECT pg_advisory_lock(hashtextextended('matviews:public.po_two', 0))")
    assert.are.equal(0, H.mv("enqueue refresh po_two --on-overlap skip --no-if-changed").code)
    r = H.mv("worker --once")
    assert.are.equal(0, r.code, r.err .. r.out)
    assert.are.same({ 2, "running" }, last_runs().po_two)
    holder:exec("SELECT pg_advisory_unlock_all()")
    local opts = mv.query("SELECT options->>'on_overlap' AS o, options->>'if_changed' AS c FROM matviews_jobs ORDER BY id DESC LIMIT 1")[1]
    assert.are.same({ o = "skip", c = "false" }, opts)
    r = H.mv("enqueue refresh po_two --on-overlap sometimes")
    assert.are.equal(2, r.code)
  end)
end)

describe("the progress line of refresh --parallel", function()
  setup(function()
    H.fresh_db("parallel_progress")
    mv.init()
    for _, n in ipairs({ "pp_a", "pp_b" }) do
      mv.definitions.save({ name = n, sql = "SELECT 1 AS x FROM pg_sleep(3)" })
      assert.are.equal("success", mv.create(n).status)
      local id = mv.definitions.get(n).id
      for _, ms in ipairs({ 9000, 10000, 11000 }) do -- a recorded median of 10 s
        mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms)
          VALUES ($1, 2, now(), now(), $2)]], id, ms)
      end
    end
  end)

  it("ticks every second on a terminal while the workers run, with an ETA from the medians", function()
    local r = H.sh("script -qec " .. H.q("exec " .. H.bin .. " refresh pp_a pp_b --parallel 2 --yes") .. " /dev/null")
    assert.are.equal(0, r.code, r.out)
    local draws = {}
    for names, el, eta in r.out:gmatch("\r\27%[K%[%d/2%] refreshing ([%w_, ]-)  ([%d%.]+s) elapsed, ETA ([%d%.]+s)") do
      el, eta = tonumber(el:sub(1, -2)), tonumber(eta:sub(1, -2))
      assert.truthy(names == "pp_a" or names == "pp_b" or names == "pp_a, pp_b" or names == "pp_b, pp_a", names)
      -- elapsed counts from the command's start, the ETA from each view's start + its median
      assert.is_true(el + eta >= 9.8 and el + eta <= el + 10.2, el .. " + " .. eta)
      draws[names] = (draws[names] or 0) + 1
    end
    -- the line is redrawn once a second while the same views run, not only
    -- when one starts or ends: while pp_a runs (3 s) it is drawn for one set
    -- of running views for at least 1.5 s, so twice at least
    local most = 0
    for _, k in pairs(draws) do most = math.max(most, k) end
    assert.is_true(most >= 2, r.out)
    assert.matches("%[2/2%] refresh pp_%a: success in %d+ ms", r.out)
    assert.matches("2/2 done, 0 failed", r.out)
  end)

  it("stays off a pipe", function()
    local r = H.mv("refresh pp_a pp_b --parallel 2 --yes")
    assert.are.equal(0, r.code)
    assert.are.equal("", r.err)
    assert.is_nil(r.out:find("ETA", 1, true))
  end)
end)
