-- Spec support for a PostgreSQL cluster of a spec's own, for faults the
-- shared cluster of spec/run.sh must not suffer (a server stopped, a small
-- max_connections): initdb + pg_ctl as the postgres user when root, a
-- socket directory of its own under the spec run's directory, and
-- C.stop() that always removes it.
local H = require "spec.helper"

local C = {}

-- Fails (naming what) unless the command r exited 0.
local function check(r, what)
  if r.code ~= 0 then error(("%s failed (exit %s): %s%s"):format(what, tostring(r.code), r.out, r.err), 3) end
end

local AS = H.sh("id -u").out == "0\n" and "runuser -u postgres -- " or ""

-- Runs a PostgreSQL program of MATVIEWS_SPEC_PGBIN as the cluster's owner.
local function pg(cmd)
  return H.sh(AS .. H.q(H.pgbin .. "/" .. cmd:match("^%S+")) .. cmd:match("^%S+(.*)$"))
end

-- Starts a cluster on port with settings (text appended to
-- postgresql.conf). Returns { dir, dsn, ctl(action), stop() }: ctl runs
-- `pg_ctl -m fast -w ACTION` ({ code, out, err }), stop removes it all.
function C.start(port, settings)
  local c = { dir = H.tmpfile("_cluster") }
  check(H.sh(AS .. "mkdir " .. H.q(c.dir)), "mkdir")
  local r = pg(("initdb -D %s -U postgres -A trust -E UTF8 --no-sync"):format(H.q(c.dir .. "/data")))
  check(r, "initdb")
  r = H.sh(AS .. "tee -a " .. H.q(c.dir .. "/data/postgresql.conf") .. " >/dev/null", { stdin =
    ("listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\n%s\n"):format(c.dir, port,
      settings or "") })
  check(r, "writing postgresql.conf")
  function c.ctl(action)
    return pg(("pg_ctl -D %s -l %s -m fast -w %s"):format(H.q(c.dir .. "/data"), H.q(c.dir .. "/server.log"), action))
  end
  function c.stop()
    pg(("pg_ctl -D %s -m immediate -w stop"):format(H.q(c.dir .. "/data")))
    H.sh("rm -rf " .. H.q(c.dir))
  end
  r = c.ctl("start")
  r.err = r.err .. H.slurp(c.dir .. "/server.log")
  check(r, "pg_ctl start")
  c.dsn = ("host=%s port=%d user=postgres dbname=postgres"):format(c.dir, port)
  return c
end

return C
