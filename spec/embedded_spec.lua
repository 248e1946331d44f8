-- The embedded default cluster: started on first use with no connection
-- settings, reused, shared safely by concurrent starters, controlled by `db`.
local H = require "spec.helper"
local mv = require "matviews"

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
    assert.are.equal("matviews: starting the embedded PostgreSQL in " .. home .. "/ (first use)\n", r.err)
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
    -- each may see the cluster missing and say so; neither fails
    local line = "matviews: starting the embedded PostgreSQL in " .. home .. "/ (first use)\n"
    assert.is_true(r.err == line or r.err == line .. line, r.err)
  end)

  it("says nothing on later uses, and its size in db status", function()
    local r = H.mv([[-e 'print(mv.query("select 3 as x")[1].x)']], { env = env })
    assert.are.equal("", r.err)
    assert.matches("^running  data: .-  size: %d+%.%d MB\n$", H.mv("db status", { env = env }).out)
    local st = mv.json.decode(H.mv("--json db status", { env = env }).out)
    assert.is_true(st.size_bytes > 1000000)
  end)

  it("stops with db stop", function()
    local r = H.mv("db stop", { env = env })
    assert.are.equal("stopped\n", r.out)
    assert.matches("^stopped", H.mv("db status", { env = env }).out)
    assert.are.equal("not running\n", H.mv("db stop", { env = env }).out)
  end)

  it("is deleted by db destroy, which asks first and refuses while in use", function()
    assert.are.equal(0, H.mv("db start", { env = env }).code)
    local r = H.mv("db destroy", { env = env })
    assert.are.equal(3, r.code)
    assert.are.equal("refusing without --yes: no terminal to ask on\n", r.err)
    local conn = mv.connect(mv.json.decode(H.mv("--json db status", { env = env }).out).conninfo)
    local pid = conn:query("SELECT pg_backend_pid() AS p")[1].p
    r = H.mv("db destroy --yes", { env = env })
    assert.are.equal(1, r.code)
    assert.are.equal(("matviews: the embedded cluster in %s is in use by 1 other connection: pid %d (?); "
      .. "stop those processes first\n"):format(home, pid), r.err)
    conn:close()
    r = H.mv("db destroy --yes", { env = env })
    assert.are.equal(0, r.code, r.err)
    assert.matches("^destroyed the embedded cluster in " .. home:gsub("%p", "%%%0") .. " %(%d+%.%d MB freed%)\n$", r.out)
    assert.is_nil(io.open(home .. "/pgdata/PG_VERSION"))
    assert.are.equal(("no embedded cluster in %s: nothing to destroy\n"):format(home), H.mv("db destroy --yes", { env = env }).out)
  end)
end)
