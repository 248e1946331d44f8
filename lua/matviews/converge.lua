-- `apply`: converges the database to the definition files by running the
-- actions of the plan (matviews.actions), in their order, after the
-- rehearsal found nothing invalid. The catalog rows are saved first, in one
-- transaction (with their versions); then each view is created (a recorded
-- create run), replaced (a recorded create run with meta.replaced = true:
-- the swap builds the new SQL beside the live view and puts it in place in
-- one short transaction, rebuilding its dependents, so readers wait only
-- for that transaction whatever the view's strategy), and brought to its
-- declared indexes, grants and comment; with prune, the views of removed
-- files are dropped (recorded delete runs) and their definitions retired.
-- The first failed action stops the run: what is after it is not done.
local actions = require "matviews.actions"

local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

local array = require("matviews.output").array

local LOCK_KEY = 7318029312 -- advisory lock: one apply at a time per database

-- Saves the file definitions the plan saves, in one transaction.
local function save_all(mv, conn, p)
  local by_key = p.rehearsal.by_key
  mv.transaction(function(c)
    c:exec("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    for _, a in ipairs(p.actions) do
      if a.action == "save" then
        local e = by_key[a.key]
        local t = {}
        for k, v in pairs(e.fc) do t[k] = v end
        local options = {}
        for k, v in pairs(e.row and e.row.options or {}) do options[k] = v end
        for _, k in ipairs(require("matviews.dsl").OPTION_KEYS) do options[k] = e.fc.options[k] end
        options.strategy = e.fc.options.strategy -- a declared strategy's name (nil for a built-in one)
        t.options = options
        mv.definitions.save(t, c)
        a.status = "success"
      end
    end
  end, conn)
end

-- The definition id of a plan key ("schema.name").
local function id_of(mv, conn, key)
  local d = mv.definitions.find(key, conn)
  return d and d.id
end

-- Runs a recorded job for action a; sets a.status, a.run_id, a.error.
local function job(mv, conn, a, op, opts)
  opts.inline = true
  local ok, run = pcall(mv.jobs.run, op, a.id or id_of(mv, conn, a.key), opts)
  if not ok then
    a.status, a.error = "failed", error_message(run)
    return false
  end
  a.status, a.run_id, a.duration_ms = run.status, run.id, run.duration_ms
  if run.status ~= "success" then a.error = tostring(run.error) end
  return run.status == "success"
end

-- Runs one statement of action a.
local function statement(conn, a)
  local ok, err = pcall(conn.exec, conn, a.sql)
  a.status = ok and "success" or "failed"
  if not ok then a.error = error_message(err) end
  return ok
end

-- Runs action a; false when it failed.
local function run_action(mv, conn, a, opts)
  if a.action == "save" then return true end
  if a.action == "create" then return job(mv, conn, a, "create", {}) end
  if a.action == "replace" then return job(mv, conn, a, "create", { replace = true }) end
  if a.action == "rebuild" then a.status = "success" return true end -- done by its replace
  if a.action == "drop" then
    if a.exists and not job(mv, conn, a, "delete", { cascade = opts.cascade or nil, if_exists = true }) then
      return false
    end
    mv.definitions.delete(a.key, conn)
    a.status = "success"
    return true
  end
  return statement(conn, a)
end

-- Applies: opts { conn, definitions (dir) or defs (loaded), prune, cascade, dry_run }.
-- Returns the plan (see matviews.actions.plan) with each action's status
-- ("success" | "failed" | nil: not run), run_id and error, and ok.
-- Installs change tracking (matviews.changes) for the live definitions that
-- say refresh_when = "changed", once their views exist: p.tracking =
-- { installed, warnings }.
local function track(mv, conn, p)
  local views = {}
  for _, r in ipairs(conn:query([[SELECT schema_name, name FROM mat_view_definitions
      WHERE deleted_at IS NULL AND options->>'refresh_when' = 'changed' ORDER BY schema_name, name]])) do
    views[#views + 1] = { schema = r.schema_name, name = r.name }
  end
  if #views == 0 then return end
  p.tracking = mv.transaction(function(c) return require("matviews.changes").install(c, views) end, conn)
end

function M.apply(opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  mv.init(conn)
  local p = actions.plan({ conn = conn, definitions = opts.definitions, defs = opts.defs, prune = opts.prune,
    cascade = opts.cascade })
  p.ok = p.valid
  if p.valid and not opts.dry_run and #p.actions == 0 then track(mv, conn, p) end
  if not p.valid or opts.dry_run or #p.actions == 0 then return p end
  save_all(mv, conn, p)
  for _, a in ipairs(p.actions) do
    if not run_action(mv, conn, a, opts) then p.ok = false break end
  end
  p.applied = array()
  for _, a in ipairs(p.actions) do if a.status then p.applied[#p.applied + 1] = a end end
  if p.ok then track(mv, conn, p) end
  return p
end

return M
