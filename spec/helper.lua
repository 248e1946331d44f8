-- Shared spec support: a fresh database per spec file, and running the real
-- host as a subprocess (exit code, stdout, stderr). Specs run inside the host
-- (busted --lua=./matviews), against the cluster spec/run.sh started.
local mv = require "matviews"

local H = {}
H.bin = os.getenv("MATVIEWS_BIN") or "./matviews"
H.tmp = os.getenv("MATVIEWS_SPEC_TMP") or "/tmp"
H.pgbin = os.getenv("MATVIEWS_SPEC_PGBIN")

-- Single-quotes s for sh.
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The bytes of path, "" when it cannot be read.
local function slurp(path)
  return require("matviews.files").read(path) or ""
end
H.slurp = slurp

function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Creates (again) the database for the calling spec file and makes it the
-- default connection; subprocesses started with H.run use it too.
function H.fresh_db(name)
  if not name then
    local src = debug.getinfo(2, "S").source
    name = src:match("([%w_]+)_spec%.lua$") or "misc"
  end
  name = "spec_" .. name
  local admin <close> = mv.connect("dbname=postgres")
  admin:exec("DROP DATABASE IF EXISTS " .. admin:quote_ident(name) .. " WITH (FORCE)")
  admin:exec("CREATE DATABASE " .. admin:quote_ident(name))
  H.dbname = name
  mv.use("dbname=" .. name)
  return name
end

-- Runs a shell command line with PGDATABASE set to this file's database.
-- opts.stdin: text fed on stdin (else /dev/null); opts.env: extra variables.
-- Returns { code = n, out = stdout, err = stderr }.
function H.sh(cmd, opts)
  opts = opts or {}
  local errf = H.tmpfile(".err")
  local env = "export PGDATABASE=" .. H.q(H.dbname or "postgres")
  for k, v in pairs(opts.env or {}) do env = env .. " " .. k .. "=" .. H.q(v) end
  local full = env .. "; ( " .. cmd .. " ) 2>" .. errf
  local inf
  if opts.stdin then
    inf = H.tmpfile(".in")
    H.write(inf, opts.stdin)
    full = full .. " <" .. inf
  else
    full = full .. " </dev/null"
  end
  local p = io.popen(full, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local err = slurp(errf)
  os.remove(errf)
  if inf then os.remove(inf) end
  return { code = code, out = out, err = err }
end

-- Runs the host with an argument string: H.mv("-e " .. H.q(code)).
function H.mv(args, opts)
  return H.sh(H.bin .. " " .. args, opts)
end

-- Runs the host with an argument string with a terminal on stdin (script(1)),
-- stdout and stderr still apart: what a user at a prompt sees. opts.stdin is
-- typed at the terminal (EOF after it), opts.env as for H.sh. Returns nil
-- when script(1) is missing.
function H.tty(args, opts)
  if os.execute("script -qec true /dev/null >/dev/null 2>&1") ~= true then return nil end
  opts = opts or {}
  local out, err = H.tmpfile(".out"), H.tmpfile(".err")
  local inner = "exec " .. H.bin .. " " .. args .. " >" .. out .. " 2>" .. err
  local r = H.sh("script -qec " .. H.q(inner) .. " /dev/null >/dev/null", { stdin = opts.stdin or "", env = opts.env })
  r.out, r.err = slurp(out), slurp(err)
  os.remove(out); os.remove(err)
  return r
end

-- The message of a usage error as the CLI prints it on stderr (the
-- command's usage, a blank line, "Error: message"), or nil when err is not
-- one.
function H.usage_message(err)
  if not err:match("^Usage: matviews") then return nil end
  return err:match("\n\nError: (.-)\n$")
end

-- A path for a scratch file of this run. busted reloads this module for each
-- spec file (insulation), so the counter alone would repeat: the clock keeps
-- names of different files apart.
local n = 0
function H.tmpfile(suffix)
  n = n + 1
  return ("%s/f%d_%d%s"):format(H.tmp, math.floor(mv.core.sys.monotonic_ms() * 1000) % 1000000000, n, suffix or "")
end

-- A fresh definitions directory holding files { [name] = text }.
function H.defs_dir(files)
  local dir = H.tmpfile("_defs")
  os.execute("mkdir -p " .. H.q(dir))
  for name, text in pairs(files or {}) do H.write(dir .. "/" .. name, text) end
  return dir
end

return H
