-- Spec support for processes running beside the spec: the host started in
-- the background (its exit code and output collected later), signals, and
-- polling the database until something shows.
local H = require "spec.helper"
local mv = require "matviews"

local P = {}

-- SQL: the client backends of this file's database other than the spec's own.
P.OTHERS = [[SELECT pid FROM pg_stat_activity WHERE datname = current_database()
  AND pid <> pg_backend_pid() AND backend_type = 'client backend']]

-- Starts `matviews ARGS` in the background (PGDATABASE = this file's
-- database). Returns { out, err, code, pidf } paths; P.wait collects them,
-- P.pid reads the host's pid (an sh that execs it writes its own $$).
function P.spawn(args, opts)
  local p = { out = H.tmpfile(".out"), err = H.tmpfile(".err"), code = H.tmpfile(".code"), pidf = H.tmpfile(".pid") }
  local run = ("echo $$ >%s.tmp; mv %s.tmp %s; exec %s %s"):format(p.pidf, p.pidf, p.pidf, H.bin, args)
  H.sh(("( sh -c %s >%s 2>%s; echo $? >%s.tmp; mv %s.tmp %s ) >/dev/null 2>&1 &")
    :format(H.q(run), p.out, p.err, p.code, p.code, p.code), opts)
  return p
end

-- The pid of a spawned host (waits until it is written).
function P.pid(p)
  return P.wait_for("a spawned host's pid", function() return tonumber(H.slurp(p.pidf):match("%d+")) end)
end

-- Waits until a backend other than this one runs a query LIKE pattern and,
-- when given, has that application_name and waits on that wait_event (e.g.
-- "PgSleep": inside pg_sleep, not merely received).
function P.wait_query(pattern, app, event)
  return P.wait_for("a query like " .. pattern, function()
    return mv.query([[SELECT pid FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active'
      AND pid <> pg_backend_pid() AND ($2::text IS NULL OR application_name = $2)
      AND ($3::text IS NULL OR wait_event = $3)]], pattern, app, event)[1]
  end)
end

-- Polls fn() every 50 ms until it returns a true value (returned), at most
-- timeout_ms (default 20 s); fails naming what was awaited.
function P.wait_for(what, fn, timeout_ms)
  local deadline = mv.core.sys.monotonic_ms() + (timeout_ms or 20000)
  repeat
    local v = fn()
    if v then return v end
    mv.core.sys.sleep_ms(50)
  until mv.core.sys.monotonic_ms() > deadline
  error("timed out waiting for " .. what, 2)
end

-- Waits for a spawned process; returns { code, out, err }.
function P.wait(p, timeout_ms)
  P.wait_for("a background matviews to exit", function() return H.slurp(p.code) ~= "" end, timeout_ms)
  return { code = tonumber(H.slurp(p.code):match("%d+")), out = H.slurp(p.out), err = H.slurp(p.err) }
end

-- Sends signal (e.g. "INT", "KILL") to pid.
function P.kill(pid, signal)
  return os.execute(("kill -%s %d"):format(signal, pid))
end

-- The run rows of a view in the run table of op, oldest first, with meta decoded.
function P.runs(op, view)
  local rows = mv.query(([[SELECT r.* FROM mat_view_%s_runs r JOIN mat_view_definitions d
    ON d.id = r.mat_view_definition_id WHERE d.name = $1 ORDER BY r.id]]):format(op), view)
  for _, r in ipairs(rows) do r.meta = mv.json.decode(r.meta) end
  return rows
end

-- The newest run row of a view (op's table) once one has status `status`.
function P.run_with_status(op, view, status)
  return P.wait_for(("a %s run of %s with status %d"):format(op, view, status), function()
    local rows = P.runs(op, view)
    local last = rows[#rows]
    return last and last.status == status and last or nil
  end)
end

-- The fixture most job specs start from: table items with ids 1 to 5.
function P.items()
  mv.exec("CREATE TABLE items (id int PRIMARY KEY, v text)")
  mv.exec("INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 5) g")
end

-- A throwaway cluster of this spec's own on port (initdb + pg_ctl, as the
-- postgres user when root; fsync off), for specs that stop or crash the
-- server, or need settings of their own (text appended to postgresql.conf:
-- max_connections = 10); the other specs' server is shared. Returns { dir, dsn,
-- ctl(action [, mode]) -> H.sh result (pg_ctl -m mode, default fast),
-- destroy() (immediate stop, files removed) }; asserts that it started.
function P.own_cluster(port, settings)
  local as = H.sh("id -u").out == "0\n" and "runuser -u postgres -- " or ""
  local function pg(cmd) -- a PostgreSQL program of MATVIEWS_SPEC_PGBIN as the cluster's owner
    return H.sh(as .. H.q(H.pgbin .. "/" .. cmd:match("^%S+")) .. cmd:match("^%S+(.*)$"))
  end
  local c = { dir = H.tmpfile("_cluster") }
  c.dsn = ("host=%s port=%d user=postgres dbname=postgres"):format(c.dir, port)
  function c.ctl(action, mode)
    return pg(("pg_ctl -D %s -l %s -m %s -w %s"):format(H.q(c.dir .. "/data"), H.q(c.dir .. "/server.log"),
      mode or "fast", action))
  end
  function c.destroy()
    pg(("pg_ctl -D %s -m immediate -w stop"):format(H.q(c.dir .. "/data")))
    H.sh("rm -rf " .. H.q(c.dir))
  end
  assert(H.sh(as .. "mkdir " .. H.q(c.dir)).code == 0)
  local r = pg(("initdb -D %s -U postgres -A trust -E UTF8 --no-sync"):format(H.q(c.dir .. "/data")))
  assert(r.code == 0, r.err)
  r = H.sh(as .. "tee -a " .. H.q(c.dir .. "/data/postgresql.conf") .. " >/dev/null", { stdin =
    ("listen_addresses = ''\nunix_socket_directories = '%s'\nport = %d\nfsync = off\n%s\n"):format(c.dir, port,
      settings or "") })
  assert(r.code == 0, r.err)
  r = c.ctl("start")
  assert(r.code == 0, r.err .. H.slurp(c.dir .. "/server.log"))
  return c
end

return P
