-- Scripted migrations: files migrations/NNN_name.lua (the directory is
-- `migrations` of the configuration, relative to the project directory)
-- that return { up = function(conn, mv) ... end, down = function(conn, mv) ... end }.
-- `conn` is the connection of the migration's transaction (the default
-- connection, so mv.query/mv.exec run in it too). Each migration runs in
-- its own transaction together with its row in matviews_migrations
-- (schema/004_migrations.lua: version, name, checksum, applied_at), so a
-- failing one leaves nothing of itself applied; statements that cannot run
-- in a transaction (CREATE INDEX CONCURRENTLY) or other connections are not
-- covered. The checksum is the sha256 of the file, computed by the server.
local core = require "matviews.core"
local output = require "matviews.output"

local M = {}

local LOCK_KEY = 7318029312 -- advisory lock: one migration at a time per database

-- The migrations directory: config `migrations`, relative to the project.
-- Returns the absolute path and the path as configured (used in messages
-- and chunk names, which Lua would cut when long).
function M.dir(mv)
  local d = mv.config().migrations or "migrations"
  if d:sub(1, 1) == "/" then return d, d end
  return mv.project_dir() .. "/" .. d, d
end

-- The migration files, ascending by version:
-- { version = n, name = "add_x", id = "002_add_x", file = path, shown = path
-- as configured }. Raises on a .lua file with another name or two files with
-- one version. shown_dir: the directory as messages show it.
function M.scan(dir, shown_dir, sys)
  local names = sys.listdir(dir)
  local list, by_version = {}, {}
  for _, f in ipairs(names or {}) do
    if f:match("%.lua$") then
      local num, name = f:match("^(%d+)_([%w_%-]+)%.lua$")
      if not num then
        core.error(("%s/%s: a migration file is named NNN_name.lua"):format(shown_dir, f))
      end
      local v = math.tointeger(tonumber(num))
      if by_version[v] then
        core.error(("%s: version %d is used by %s and %s"):format(shown_dir, v, by_version[v].id, f:sub(1, -5)))
      end
      local m = { version = v, name = name, id = f:sub(1, -5), file = dir .. "/" .. f, shown = shown_dir .. "/" .. f }
      by_version[v] = m
      list[#list + 1] = m
    end
  end
  table.sort(list, function(a, b) return a.version < b.version end)
  return list
end

-- Writes a new migration, the next version after the highest one, named
-- name (letters, digits, _ and -), with an up/down skeleton; creates the
-- directory if needed. Returns the path as configured ("migrations/004_x.lua").
function M.new(mv, name)
  if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
    require("matviews.targets").usage(name == nil and "migrate new: give the migration's name (letters, digits, _ and -)"
      or ("migrate new: '%s' is not a migration name (letters, digits, _ and -)"):format(name))
  end
  local dir, shown = M.dir(mv)
  local list = M.scan(dir, shown, mv.core.sys)
  local version = (#list > 0 and list[#list].version or 0) + 1
  local id = ("%03d_%s"):format(version, name)
  if not os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") then core.error("cannot create " .. shown) end
  local path = dir .. "/" .. id .. ".lua"
  if require("matviews.files").exists(path) then core.error(("%s/%s.lua exists already"):format(shown, id)) end
  local f, err = io.open(path, "w")
  if not f then core.error(("cannot write %s/%s.lua: %s"):format(shown, id, tostring(err))) end
  f:write(([[
-- Migration %s. `matviews migrate` runs up in a transaction of its own and
-- records it; `matviews migrate down` runs down. conn is the transaction's
-- connection (mv.query runs in it too); an error rolls everything back.
return {
  up = function(conn, mv)
    -- conn:exec("ALTER TABLE events ADD COLUMN source text")
  end,
  down = function(conn, mv)
    -- conn:exec("ALTER TABLE events DROP COLUMN source")
  end,
}
]]):format(id))
  f:close()
  return shown .. "/" .. id .. ".lua"
end

local function read_file(path)
  local s, err = require("matviews.files").read(path)
  if not s then core.error(err) end
  return s
end

-- sha256 of text (hex), computed by the server from the bytes sent as hex.
function M.checksum(conn, text)
  local hex = text:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return conn:query("SELECT encode(sha256(decode($1, 'hex')), 'hex') AS sum", hex)[1].sum
end

-- Loads a migration from its text: its { up, down } table.
function M.load(m, text)
  local chunk, err = load(text, "@" .. m.shown, "t")
  if not chunk then core.error(err) end
  local ok, mod = pcall(chunk)
  if not ok then error(mod, 0) end
  if type(mod) ~= "table" or type(mod.up) ~= "function" or (mod.down ~= nil and type(mod.down) ~= "function") then
    core.error(m.shown .. ": a migration returns { up = function(conn, mv), down = function(conn, mv) }")
  end
  return mod
end

-- The applied rows by version (none while the table does not exist).
local function applied_rows(conn)
  local by = {}
  if not conn:query("SELECT to_regclass('matviews_migrations') IS NOT NULL AS ok")[1].ok then return by end
  for _, r in ipairs(conn:query(([[SELECT version, name, checksum, %s AS applied_at
      FROM matviews_migrations ORDER BY version]]):format(require("matviews.format").iso_sql("applied_at")))) do
    by[r.version] = r
  end
  return by
end

-- Every migration known from the files or the table, ascending, each with
-- status "applied", "pending", "changed" (file differs from what was
-- applied) or "missing" (applied, file gone). Changes nothing.
function M.status(mv, conn)
  conn = conn or mv.conn()
  local dir, shown = M.dir(mv)
  local files = M.scan(dir, shown, mv.core.sys)
  local rows = applied_rows(conn)
  local out, seen = {}, {}
  for _, m in ipairs(files) do
    local r = rows[m.version]
    local e = { version = m.version, name = m.name, id = m.id, file = m.file, shown = m.shown, status = "pending" }
    if r then
      e.applied_at, e.checksum = r.applied_at, r.checksum
      e.file_checksum = M.checksum(conn, read_file(m.file))
      e.status = e.file_checksum == r.checksum and "applied" or "changed"
    end
    seen[m.version] = true
    out[#out + 1] = e
  end
  for v, r in pairs(rows) do
    if not seen[v] then
      out[#out + 1] = { version = v, name = r.name, id = ("%03d_%s"):format(v, r.name), status = "missing",
                        applied_at = r.applied_at, checksum = r.checksum }
    end
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

-- The text of an error from a migration: its first line (no traceback).
local function error_line(e)
  return (output.error_text(e):match("^[^\n]*"))
end

-- Runs one step of m (`up` or `down`) in a transaction with its record.
-- Returns true, or false and the error text.
local function run_one(mv, conn, m, dir)
  local started = mv.core.sys.monotonic_ms()
  local ok, err = pcall(mv.transaction, function(c)
    c:exec("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    local have = #c:query("SELECT 1 FROM matviews_migrations WHERE version = $1", m.version) > 0
    if have == (dir == "up") then return end -- done meanwhile by another process
    local text = read_file(m.file)
    local mod = M.load(m, text)
    if dir == "up" then
      mod.up(c, mv)
      c:exec("INSERT INTO matviews_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        m.version, m.name, M.checksum(c, text))
    else
      if not mod.down then core.error(m.shown .. " has no down function") end
      mod.down(c, mv)
      c:exec("DELETE FROM matviews_migrations WHERE version = $1", m.version)
    end
  end, conn)
  m.ms = math.floor(mv.core.sys.monotonic_ms() - started + 0.5)
  if not ok then return false, error_line(err) end
  return true
end

-- The connection (catalog installed) and an empty result, for up and down.
local function start(mv, conn)
  conn = conn or mv.conn()
  mv.init(conn)
  return conn, { done = {}, changed = {} }
end

-- Notes the outcome of migration e in res; false when the run must stop.
local function note(res, e, ok, err)
  if not ok then res.failed = { id = e.id, error = err }; return false end
  res.done[#res.done + 1] = { id = e.id, version = e.version, ms = e.ms }
  return true
end

-- Applies pending migrations in ascending order, at most n (nil: all);
-- stops at the first failure. Returns { done = {...}, failed = { id, error }?,
-- changed = { ids of applied files changed since } }.
function M.up(mv, n, conn)
  local res
  conn, res = start(mv, conn)
  for _, e in ipairs(M.status(mv, conn)) do
    if e.status == "changed" then res.changed[#res.changed + 1] = e.id end
    if e.status == "pending" and (n == nil or #res.done < n) then
      if not note(res, e, run_one(mv, conn, e, "up")) then break end
    end
  end
  return res
end

-- Reverts the last n applied migrations (default 1), newest first; stops
-- at the first failure. A migration whose file is gone cannot be reverted.
function M.down(mv, n, conn)
  local res
  conn, res = start(mv, conn)
  local list = M.status(mv, conn)
  for i = #list, 1, -1 do
    local e = list[i]
    if #res.done >= (n or 1) then break end
    if e.status ~= "pending" then
      local ok, err
      if e.status == "missing" then
        ok, err = false, ("its file %s/%s.lua is gone"):format(select(2, M.dir(mv)), e.id)
      else
        ok, err = run_one(mv, conn, e, "down")
      end
      if not note(res, e, ok, err) then break end
    end
  end
  return res
end

return M
