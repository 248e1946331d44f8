-- The demo's data: users, accounts, events and sessions, generated in SQL
-- from generate_series with arithmetic on the row numbers only (no random()),
-- so a scale always gives the same rows, byte for byte. A marker table,
-- demo_seed, records the scale; seeding again at the same scale is a no-op,
-- at another scale it replaces the four tables (and the views over them).
--
-- As a module (dofile): M.seed{ users = N [, conn] }, M.checksum([conn]),
-- M.scale([conn]). As a script: matviews run demo/seed.lua [--users N].
local M = {}

M.DEFAULT_USERS = 50000
M.TABLES = { "users", "accounts", "events", "sessions" }

-- Per user on average: 2 accounts, 9 events, 3.5 sessions.
local SQL = {
  [[CREATE TABLE users (
      id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text NOT NULL,
      country text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL)]],
  [[INSERT INTO users
    SELECT g, 'user' || g || '@example.com', 'User ' || g,
           (ARRAY['US','DE','FR','IN','BR','JP','CA','GB'])[1 + (g * 7) % 8],
           CASE WHEN g % 10 = 0 THEN 'inactive' ELSE 'active' END,
           timestamptz '2024-01-01 00:00:00+00' + ((g * 2654435761) % 31536000) * interval '1 second'
    FROM generate_series(1, $1::bigint) g]],
  [[CREATE TABLE accounts (
      id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id),
      plan text NOT NULL, balance_cents bigint NOT NULL, created_at timestamptz NOT NULL)]],
  [[INSERT INTO accounts
    SELECT (u.id - 1) * 3 + k, u.id,
           (ARRAY['free','pro','team','enterprise'])[1 + (u.id * 3 + k) % 4],
           ((u.id * 7919 + k * 104729) % 1000000),
           u.created_at + (k * 86400) * interval '1 second'
    FROM users u, generate_series(1, 1 + (u.id % 3)) k]],
  [[CREATE TABLE events (
      id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id),
      account_id bigint NOT NULL REFERENCES accounts (id), kind text NOT NULL,
      amount_cents bigint NOT NULL, occurred_at timestamptz NOT NULL)]],
  [[INSERT INTO events
    SELECT a.id * 16 + k, a.user_id, a.id,
           (ARRAY['login','view','click','purchase','logout'])[1 + (a.id * 31 + k * 17) % 5],
           CASE WHEN (a.id * 31 + k * 17) % 5 = 3 THEN (a.id * 613 + k * 997) % 50000 ELSE 0 END,
           a.created_at + ((a.id * 40503 + k * 9973) % 15552000) * interval '1 second'
    FROM accounts a, generate_series(1, (a.id * 7) % 10) k]],
  [[CREATE TABLE sessions (
      id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id),
      started_at timestamptz NOT NULL, duration_s integer NOT NULL)]],
  [[INSERT INTO sessions
    SELECT u.id * 8 + k, u.id,
           u.created_at + ((u.id * 69069 + k * 7907) % 15552000) * interval '1 second',
           (60 + (u.id * 37 + k * 101) % 3600)::int
    FROM users u, generate_series(1, (u.id * 5) % 8) k]],
  "CREATE INDEX accounts_user_id_idx ON accounts (user_id)",
  "CREATE INDEX events_account_id_idx ON events (account_id)",
  "CREATE INDEX events_user_id_idx ON events (user_id)",
  "CREATE INDEX sessions_user_id_idx ON sessions (user_id)",
  "CREATE TABLE demo_seed (users bigint NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now())",
  "INSERT INTO demo_seed (users) VALUES ($1::bigint)",
}

local function mvmod() return require "matviews" end

-- The scale the data was seeded at, or nil when there is no demo data.
function M.scale(conn)
  conn = conn or mvmod().conn()
  local r = conn:query("SELECT to_regclass('demo_seed') IS NOT NULL AS ok")[1]
  if not r.ok then return nil end
  local s = conn:query("SELECT users FROM demo_seed LIMIT 1")[1]
  return s and s.users or nil
end

-- Refuses to drop tables named like the demo's that the demo did not make.
local function check_foreign(conn)
  for _, t in ipairs(M.TABLES) do
    local r = conn:query("SELECT to_regclass($1) IS NOT NULL AS ok", t)[1]
    if r.ok then
      error(mvmod().error({ message = ("table %s exists and was not made by the demo; "
        .. "use another database (--dsn) for the demo"):format(t) }), 0)
    end
  end
end

-- Seeds the four tables at opts.users users (default 50,000). Returns
-- { users = N, seeded = true|false, ms = elapsed } (seeded false: reused).
function M.seed(opts)
  opts = opts or {}
  local mv = mvmod()
  local conn = opts.conn or mv.conn()
  local n = math.tointeger(opts.users or M.DEFAULT_USERS)
  if not n or n < 1 then error(mv.error({ message = "users must be a positive integer" }), 0) end
  local have = M.scale(conn)
  if have == n then return { users = n, seeded = false, ms = 0 } end
  local t0 = mv.core.sys.monotonic_ms()
  mv.transaction(function(c)
    if have then
      c:exec("DROP TABLE IF EXISTS sessions, events, accounts, users, demo_seed CASCADE")
    else
      check_foreign(c)
    end
    for _, sql in ipairs(SQL) do
      if sql:find("%$1") then c:exec(sql, n) else c:exec(sql) end
    end
  end, conn)
  for _, t in ipairs(M.TABLES) do conn:exec("ANALYZE " .. t) end
  local t1 = mv.core.sys.monotonic_ms()
  return { users = n, seeded = true, ms = t1 - t0 }
end

-- One md5 over every row of the four tables, in id order: equal checksums
-- mean equal data.
function M.checksum(conn)
  conn = conn or mvmod().conn()
  local parts = {}
  for _, t in ipairs(M.TABLES) do
    local q = ("SELECT coalesce(md5(string_agg(md5(x::text), '' ORDER BY x.id)), '') AS h, count(*) AS n FROM %s x")
      :format(conn:quote_ident(t))
    local r = conn:query(q)[1]
    parts[#parts + 1] = t .. ":" .. r.n .. ":" .. r.h
  end
  return conn:query("SELECT md5($1) AS h", table.concat(parts, ";"))[1].h
end

-- Row counts of the four tables.
function M.counts(conn)
  conn = conn or mvmod().conn()
  local out = {}
  for _, t in ipairs(M.TABLES) do
    out[t] = conn:query("SELECT count(*) AS n FROM " .. conn:quote_ident(t))[1].n
  end
  return out
end

-- Reads --users N (or DEMO_USERS) from a script's arguments.
function M.users_from_args(args)
  local n = tonumber(os.getenv("DEMO_USERS") or "")
  local i = 1
  while args and args[i] do
    local a = args[i]
    if a == "--users" then n = tonumber(args[i + 1]); i = i + 1
    elseif a:match("^%-%-users=") then n = tonumber(a:match("=(.*)$"))
    else error(mvmod().error({ message = "unknown argument " .. a .. " (expected --users N)" }), 0) end
    i = i + 1
  end
  return math.tointeger(n) or M.DEFAULT_USERS
end

if arg and arg[0] and arg[0]:match("seed%.lua$") then
  local r = M.seed({ users = M.users_from_args({ ... }) })
  local c = M.counts()
  print(("%s %d users: %d accounts, %d events, %d sessions"):format(
    r.seeded and "seeded" or "reused", r.users, c.accounts, c.events, c.sessions))
end

return M
