-- The embedded default cluster: started on first use with no connection
-- settings, reused, shared safely by concurrent starters, controlled by `db`.
local H = require "spec.helper"

local NO_PG = { PGHOST = "", PGPORT = "", PGDATABASE = "", PGUSER = "", DATABASE_URL = "" }

describe("the embedded default database", function()
  local home = H.tmp .. "/embedded-spec"
  local env = {}
  for k, v in pairs(NO_PG) do env[k] = v end
  env.MATVIEWS_HOME = home

  teardown(function()
    H.mv("db stop", { env = env })
    os.execute("rm -rf " .. H.q(home))
  end)

  it("starts a fresh cluster on first use and answers the query", function()
    local r = H.mv([[-e 'print(mv.query("select 1+$1::int as x", 1)[1].x)']], { env = env })
    assert.are.equal("", r.err)
    assert.are.equal("2\n", r.out)
    assert.are.equal(0, r.code)
    assert.is_true(io.open(home .. "/pgdata/PG_VERSION") ~= nil)
  end)

  it("is reused when running, and reports status and url", function()
    local r = H.mv("db status", { env = env })
    assert.are.equal(0, r.code)
    assert.matches("^running  data: " .. home:gsub("%p", "%%%0") .. "/pgdata", r.out)
    local url = H.mv("db url", { env = env }).out:gsub("\n$", "")
    assert.matches("^postgresql://postgres@/postgres%?host=", url)
    r = H.mv("--dsn " .. H.q(url) .. [[ -e 'print(mv.query("select current_user u")[1].u)']], { env = env })
    assert.are.equal("postgres\n", r.out)
  end)

  it("is started once by two processes starting it at the same time", function()
    assert.are.equal(0, H.mv("db stop", { env = env }).code)
    os.execute("rm -rf " .. H.q(home))
    local cmd = H.bin .. [[ -e 'print(mv.query("select 7 as x")[1].x)']]
    local r = H.sh(cmd .. " & " .. cmd .. " & wait", { env = env })
    assert.are.equal("7\n7\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("stops with db stop", function()
    local r = H.mv("db stop", { env = env })
    assert.are.equal("stopped\n", r.out)
    assert.matches("^stopped", H.mv("db status", { env = env }).out)
    assert.are.equal("not running\n", H.mv("db stop", { env = env }).out)
  end)
end)
