-- C safety at the Lua boundary: counts that come from the caller (query
-- parameters, nesting depth) are checked against the Lua stack, and a
-- PGresult is never leaked when converting it into Lua runs out of memory.
-- Each runs in a child host, so a crash shows as its exit code.
local H = require "spec.helper"
local mv = require "matviews"

describe("caller-sized input in C", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "cs_v", sql = "SELECT 1 AS x" })
  end)

  it("conn:query with 100 parameters", function()
    local r = H.mv("-e " .. H.q([[
      local args, terms = {}, {}
      for i = 1, 100 do args[i] = i; terms[i] = "$" .. i .. "::int" end
      local c = mv.conn()
      print(c:query("SELECT " .. table.concat(terms, " + ") .. " AS s", table.unpack(args))[1].s)
      print(mv.exec("SELECT " .. table.concat(terms, " + "), table.unpack(args)))]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("5050\n1\n", r.out)
  end)

  it("a refresh with options nested 50 deep", function()
    local r = H.mv("-e " .. H.q([[
      local t = { leaf = true }
      for _ = 1, 50 do t = { t } end
      -- a coroutine starts with a small stack, as a worker's job may
      coroutine.wrap(function()
        local run = mv.create("cs_v", { nested = t })
        print(run.status, run.error)
        run = mv.refresh("cs_v", { nested = t })
        print(run.status, run.error)
      end)()]]))
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("success\tnil\nsuccess\tnil\n", r.out)
  end)
end)

describe("a Lua memory error while a result is converted", function()
  setup(function() H.fresh_db() end)

  -- Each result (~20 MB in libpq) is larger than the Lua heap may grow
  -- (MATVIEWS_LUA_MEMORY_MB=16), so converting it raises "not enough
  -- memory" midway. The PGresult must be freed all the same: ten leaked
  -- ones would add ~200 MB of resident memory (and LeakSanitizer reports).
  it("frees the result: memory stays flat and the connection works", function()
    local r = H.mv("-e " .. H.q([[
      local function rss() local f = io.open("/proc/self/statm"); local _, res = f:read("n", "n"); f:close(); return res * 4096 / 2^20 end
      local sql = "SELECT g, repeat('x', 40) AS t FROM generate_series(1, 200000) g"
      local ok, e = pcall(mv.query, sql)
      print(ok, tostring(e):match("not enough memory"))
      collectgarbage()
      local before = rss()
      for _ = 1, 10 do pcall(mv.query, sql); collectgarbage() end
      print(rss() - before < 100)
      print(mv.query("SELECT 7 AS x")[1].x)]]),
      { env = { MATVIEWS_LUA_MEMORY_MB = "16", ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=8" } })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("false\tnot enough memory\ntrue\n7\n", r.out)
  end)
end)
