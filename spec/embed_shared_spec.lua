-- The embedded database's directories in shared places: as root, a project
-- directory the server's user cannot reach moves the cluster to
-- /var/tmp/matviews-<FNV-1a of the path>; a long path puts the socket in
-- /tmp/matviews-sock-<hash>. Both names are predictable, so a directory
-- someone else made there first is refused, and nothing is written into it.
local H = require "spec.helper"

local NO_PG = { PGHOST = "", PGPORT = "", PGDATABASE = "", PGUSER = "", DATABASE_URL = "" }

-- FNV-1a of s as src/embed.c names the directories (8 hex digits).
local function fnv(s)
  local h = 2166136261
  for i = 1, #s do h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff end
  return ("%08x"):format(h)
end

local function env_for(home)
  local env = { MATVIEWS_HOME = home }
  for k, v in pairs(NO_PG) do env[k] = v end
  return env
end

describe("the embedded database in a shared directory", function()
  it("refuses a fallback directory planted by another user, and appends nothing through its symlink", function()
    local is_root = H.sh("id -u").out == "0\n"
    assert.is_true(is_root, "the spec suite runs as root (spec/run.sh), where the fallback applies")
    local home = H.tmpfile(".home")
    os.execute("mkdir -m 700 " .. H.q(home)) -- the postgres user cannot reach it
    local base = "/var/tmp/matviews-" .. fnv(home)
    local secret = H.write(H.tmpfile(".secret"), "root's secret\n")
    os.execute("chmod 600 " .. H.q(secret))
    assert.are.equal(0, H.sh(("mkdir -m 755 %s && ln -s %s %s/embed.log && chown -h nobody %s %s/embed.log")
      :format(H.q(base), H.q(secret), H.q(base), H.q(base), H.q(base))).code)
    finally(function() os.execute("rm -rf " .. H.q(base)) end)
    local r = H.mv("db start", { env = env_for(home) })
    assert.are.equal(1, r.code)
    assert.matches("refusing to use " .. base:gsub("%p", "%%%0") .. " for the embedded database: it is owned by uid 65534 "
      .. "%(remove it, or set MATVIEWS_HOME to a directory of your own%)", r.err)
    assert.are.equal("root's secret\n", H.slurp(secret))
  end)

  it("refuses a socket directory others may write to", function()
    local home = H.tmp .. "/" .. ("long"):rep(30) .. fnv(H.tmpfile())
    os.execute("mkdir -p " .. H.q(home))
    local sock = "/tmp/matviews-sock-" .. fnv(home)
    assert.are.equal(0, H.sh("mkdir -m 777 " .. H.q(sock)).code)
    finally(function() os.execute("rm -rf " .. H.q(sock) .. " " .. H.q(home)) end)
    local r = H.mv("db start", { env = env_for(home) })
    assert.are.equal(1, r.code)
    assert.matches("refusing to use " .. sock:gsub("%p", "%%%0") .. " for the embedded database: others may write to it", r.err)
    assert.is_nil(io.open(home .. "/pgdata/PG_VERSION"))
  end)
end)
