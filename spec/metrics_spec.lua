-- `matviews metrics`: counters kept in matviews_run_counters by a trigger in
-- the finalising transaction (monotonic whatever prune deletes), the view
-- and queue gauges, duration histograms, an exposition promtool accepts,
-- and `--listen`: a tiny HTTP server (GET only, bounded requests).
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

-- The samples of an exposition: { ['name{labels}'] = value }.
local function parse(text)
  local s = {}
  for line in text:gmatch("([^\n]*)\n") do
    if not line:match("^#") then
      local key, value = line:match("^(%S+) (%S+)$")
      assert.truthy(key, "not a sample line: " .. line)
      s[key] = tonumber(value) or (value == "+Inf" and math.huge)
    end
  end
  return s
end

local function metrics()
  local r = H.mv("metrics")
  assert.are.equal(0, r.code, r.err)
  return parse(r.out), r.out
end

describe("matviews metrics", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE m_src (d int)")
    mv.exec("INSERT INTO m_src SELECT 1 FROM generate_series(1, 1000)")
    mv.definitions.save({ name = "m_v", sql = "SELECT 10 / d AS x FROM m_src" })
    assert.are.equal("success", mv.create("m_v").status)
    for _ = 1, 3 do assert.are.equal("success", mv.refresh("m_v").status) end
    mv.exec("UPDATE m_src SET d = 0")
    assert.are.equal("failed", mv.refresh("m_v").status)
    mv.exec("UPDATE m_src SET d = 1")
  end)

  it("counts finished runs and keeps the counts through prune", function()
    local s = metrics()
    assert.are.equal(3, s['matviews_runs_total{view="m_v",op="refresh",status="success"}'])
    assert.are.equal(1, s['matviews_runs_total{view="m_v",op="refresh",status="failed"}'])
    assert.are.equal(1, s['matviews_runs_total{view="m_v",op="create",status="success"}'])
    assert.are.equal(1, s['matviews_failures_total{view="m_v"}'])
    local cfg = H.write(H.tmpfile(".lua"), "retention = { keep_last = 1, keep_failures = false }\n")
    local r = H.mv("prune --yes --config " .. H.q(cfg))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal(1, mv.query("SELECT count(*)::int AS n FROM mat_view_refresh_runs")[1].n)
    local after = metrics()
    for k, v in pairs(s) do
      if k:match("_total{") or k:match("^matviews_run_duration_seconds_") then
        assert.are.equal(v, after[k], k)
      end
    end
    assert.are.equal("success", mv.refresh("m_v").status)
    assert.are.equal(4, metrics()['matviews_runs_total{view="m_v",op="refresh",status="success"}'])
  end)

  it("moves a counter only with the transaction that finalises the run", function()
    local before = metrics()['matviews_runs_total{view="m_v",op="refresh",status="failed"}']
    local id = mv.definitions.get("m_v").id
    pcall(mv.transaction, function(c)
      c:exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms)
        VALUES ($1, 3, now(), now(), 5)]], id)
      error("roll back")
    end)
    assert.are.equal(before, metrics()['matviews_runs_total{view="m_v",op="refresh",status="failed"}'])
    -- a running row counts once it is finalised, and only once
    mv.exec([[INSERT INTO mat_view_refresh_runs (mat_view_definition_id, status, started_at) VALUES ($1, 1, now())]], id)
    mv.exec([[UPDATE mat_view_refresh_runs SET status = 3, finished_at = now(), duration_ms = 7 WHERE status = 1]])
    mv.exec([[UPDATE mat_view_refresh_runs SET error = 'again' WHERE status = 3]])
    assert.are.equal(before + 1, metrics()['matviews_runs_total{view="m_v",op="refresh",status="failed"}'])
  end)

  it("counts every way a run is finalised exactly once, in the right bucket (schema step 13's triggers)", function()
    local id = mv.definitions.get("m_v").id
    local function row(status)
      return mv.query([[SELECT runs, timed_runs, duration_ms_sum, buckets::text AS b FROM matviews_run_counters
        WHERE mat_view_definition_id = $1 AND op = 'delete' AND status = $2]], id, status)[1]
    end
    assert.is_nil(row("failed"))
    -- a running row is not counted, nor is an update that leaves it running
    local run = mv.query([[INSERT INTO mat_view_delete_runs (mat_view_definition_id, status, started_at)
      VALUES ($1, 1, now()) RETURNING id]], id)[1].id
    mv.exec("UPDATE mat_view_delete_runs SET status = 1, meta = '{}' WHERE id = $1", run)
    assert.is_nil(row("failed"))
    -- the first finalisation inserts the counters row (no duration: not timed)
    mv.exec("UPDATE mat_view_delete_runs SET status = 3 WHERE id = $1", run)
    assert.are.same({ runs = 1, timed_runs = 0, duration_ms_sum = 0, b = "{0,0,0,0,0,0,0,0,0,0}" }, row("failed"))
    -- finishing it again (or touching it) does not count
    mv.exec("UPDATE mat_view_delete_runs SET status = 2, duration_ms = 5 WHERE id = $1", run)
    mv.exec("UPDATE mat_view_delete_runs SET status = 3 WHERE id = $1", run)
    assert.are.same({ runs = 1, timed_runs = 0, duration_ms_sum = 0, b = "{0,0,0,0,0,0,0,0,0,0}" }, row("failed"))
    assert.is_nil(row("success"))
    -- an inserted finished row, then an update of a running one: bucket bounds are inclusive
    mv.exec([[INSERT INTO mat_view_delete_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms)
      VALUES ($1, 3, now(), now(), 500)]], id)
    run = mv.query([[INSERT INTO mat_view_delete_runs (mat_view_definition_id, status, started_at)
      VALUES ($1, 1, now()) RETURNING id]], id)[1].id
    mv.exec("UPDATE mat_view_delete_runs SET status = 3, duration_ms = 4000000 WHERE id = $1", run)
    mv.exec([[INSERT INTO mat_view_delete_runs (mat_view_definition_id, status, started_at, finished_at, duration_ms)
      VALUES ($1, 3, now(), now(), 501)]], id)
    assert.are.same({ runs = 4, timed_runs = 3, duration_ms_sum = 4001001, b = "{0,1,1,0,0,0,0,0,0,1}" }, row("failed"))
    -- reconcile finalises an orphaned run: counted once too
    mv.exec([[INSERT INTO mat_view_delete_runs (mat_view_definition_id, status, started_at, backend_pid)
      VALUES ($1, 1, now() - interval '1 minute', 2147483000)]], id)
    assert.are.equal(0, H.mv("reconcile").code)
    assert.are.equal(5, row("failed").runs)
    assert.are.equal(0, mv.query("SELECT count(*)::int AS n FROM mat_view_delete_runs WHERE status = 1")[1].n)
    mv.exec("DELETE FROM mat_view_delete_runs WHERE mat_view_definition_id = $1", id)
    mv.exec("DELETE FROM matviews_run_counters WHERE mat_view_definition_id = $1 AND op = 'delete'", id)
  end)

  it("gives staleness, rows, size, last durations, queue jobs, up and histograms", function()
    assert.are.equal(0, H.mv("enqueue refresh m_v").code)
    local s = metrics()
    assert.are.equal(1, s.matviews_up)
    local stale = s['matviews_view_staleness_seconds{view="m_v"}']
    assert.is_true(stale >= 0 and stale < 3600, tostring(stale))
    assert.are.equal(1000, s['matviews_view_rows{view="m_v"}'])
    assert.is_true(s['matviews_view_size_bytes{view="m_v"}'] > 8192)
    assert.is_true(s['matviews_last_duration_seconds{view="m_v",op="refresh"}'] >= 0)
    assert.are.equal(1, s['matviews_queue_jobs{status="pending"}'])
    assert.are.equal(0, s['matviews_queue_jobs{status="failed"}'])
    local count = s['matviews_run_duration_seconds_count{view="m_v",op="refresh"}']
    assert.are.equal(count, s['matviews_run_duration_seconds_bucket{view="m_v",op="refresh",le="+Inf"}'])
    assert.is_true(count >= 6)
    local prev = 0
    for _, le in ipairs({ "0.1", "0.5", "1", "5", "15", "60", "300", "900", "3600", "+Inf" }) do
      local n = s['matviews_run_duration_seconds_bucket{view="m_v",op="refresh",le="' .. le .. '"}']
      assert.is_true(n >= prev, le)
      prev = n
    end
    assert.is_true(s['matviews_run_duration_seconds_sum{view="m_v",op="refresh"}'] >= 0)
    mv.exec("DELETE FROM matviews_jobs")
  end)

  it("is an exposition promtool accepts", function()
    local _, text = metrics()
    local f = H.write(H.tmpfile(".prom"), text)
    local r = H.sh("promtool check metrics < " .. H.q(f))
    assert.are.equal(0, r.code, r.out .. r.err)
    assert.are.equal("", r.out .. r.err)
  end)

  it("says matviews_up 0 and exits 1 when the database cannot be read", function()
    local r = H.mv("--dsn 'host=/nonexistent dbname=x' metrics")
    assert.are.equal(1, r.code)
    assert.are.equal(0, parse(r.out).matviews_up)
    assert.matches("^matviews: ", r.err)
  end)
end)

describe("matviews metrics --listen", function()
  local pid, port, errf
  setup(function()
    H.fresh_db("metrics_http")
    mv.init()
    errf = H.tmpfile(".err")
    pid = H.sh(("%s metrics --listen 127.0.0.1:0 --request-timeout-ms 300 2>%s >/dev/null & echo $!")
      :format(H.bin, H.q(errf))).out:match("%d+")
    local deadline = mv.core.sys.monotonic_ms() + 60000
    repeat
      port = H.slurp(errf):match("serving http://127%.0%.0%.1:(%d+)/metrics")
      if not port then
        assert(mv.core.sys.monotonic_ms() < deadline, "no server: " .. H.slurp(errf))
        mv.core.sys.sleep_ms(20)
      end
    until port
  end)
  teardown(function() if pid then os.execute("kill " .. pid) end end)

  local function curl(args)
    local r = H.sh("curl -s -o /dev/stdout -w '\\n%{http_code}' --max-time 60 " .. args)
    local body, code = r.out:match("^(.*)\n(%d+)$")
    return tonumber(code), body
  end

  it("serves GET /metrics, and only that", function()
    local code, body = curl("http://127.0.0.1:" .. port .. "/metrics")
    assert.are.equal(200, code)
    assert.truthy(body:find("\nmatviews_up 1\n", 1, true))
    assert.are.equal(404, (curl("http://127.0.0.1:" .. port .. "/")))
    assert.are.equal(405, (curl("-X POST -d x=1 http://127.0.0.1:" .. port .. "/metrics")))
    assert.are.equal(405, (curl("-X DELETE http://127.0.0.1:" .. port .. "/metrics")))
  end)

  it("bounds requests: headers over 8 KiB, a client that says nothing", function()
    local big = ("a"):rep(9000)
    assert.are.equal(431, (curl("-H 'X-Big: " .. big .. "' http://127.0.0.1:" .. port .. "/metrics")))
    -- a silent connection is closed after the request timeout, and the
    -- server goes on serving
    local r = H.sh("curl -s --max-time 60 telnet://127.0.0.1:" .. port .. " </dev/null")
    assert.matches("^HTTP/1.1 408 Request Timeout\r\n", r.out)
    assert.are.equal(200, (curl("http://127.0.0.1:" .. port .. "/metrics")))
  end)

  it("listens on localhost unless a host is given", function()
    local http = require "matviews.http"
    assert.are.same({ "127.0.0.1", "9187" }, { http.parse_address("9187") })
    assert.are.same({ "::1", "9187" }, { http.parse_address("[::1]:9187") })
    assert.are.same({ "0.0.0.0", "9187" }, { http.parse_address("0.0.0.0:9187") })
    assert.is_nil(http.parse_address("localhost"))
    assert.is_nil((http.parse_address("x:70000")))
  end)
end)
