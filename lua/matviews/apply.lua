-- apply: syncs the definition files into mat_view_definitions in one
-- transaction (through mv.definitions: insert, update when a field differs,
-- leave the rest), and
-- brings each existing live view's indexes and grants to what its file
-- declares (missing indexes created; grants granted and revoked). With
-- prune, deletes the catalog rows whose files are gone (their run history
-- goes with them through the foreign keys; the views are not dropped).
local dsl = require "matviews.dsl"
local plan = require "matviews.plan"

local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

-- Marks a table as a JSON array (written [] when empty) where the output
-- module can (matviews.output.array); else returns it as it is.
local array = require("matviews.output").array or function(t) return t or {} end

-- Raises a matviews error table (message [, sqlstate]).
local function raise(e) require("matviews.core").error(e) end

local LOCK_KEY = 7318029312 -- advisory lock: one apply at a time per database

-- The definition table to save: the file's fields, with the catalog row's
-- options kept except those the file owns (dsl.OPTION_KEYS).
local function to_save(fc, row)
  local options = {}
  for k, v in pairs(row and row.options or {}) do options[k] = v end
  for _, k in ipairs(require("matviews.dsl").OPTION_KEYS) do options[k] = fc.options[k] end
  options.strategy = fc.options.strategy -- a declared strategy's name (nil for a built-in one)
  local t = {}
  for k, v in pairs(fc) do t[k] = v end
  t.options = options
  return t
end

-- Brings the live view of fc (if it exists) to its declared indexes and
-- grants. Returns the SQL run (an array, empty when nothing was needed).
local function sync_live(c, fc)
  local l = plan.live(c, fc)
  local done = array()
  if not l.exists then return done, false end
  for _, ix in ipairs(l.indexes_missing) do done[#done + 1] = plan.index_sql(c, ix, l.quoted) end
  for _, g in ipairs(l.grants_missing) do done[#done + 1] = plan.grant_sql(c, "grant", g, l.quoted) end
  for _, g in ipairs(l.grants_extra) do done[#done + 1] = plan.grant_sql(c, "revoke", g, l.quoted) end
  for _, sql in ipairs(done) do
    local ok, err = pcall(c.exec, c, sql)
    if not ok then
      raise({ message = ("view %s: %s: %s"):format(fc.name, sql, error_message(err)),
        sqlstate = type(err) == "table" and err.sqlstate or nil })
    end
  end
  return done, true
end

-- The catalog definitions without a file (what prune would delete), by label.
function M.orphans(conn, defs)
  local cat, keys = plan.catalog(conn)
  local default_schema = require("matviews").definitions.default_schema(conn)
  local files, out = {}, {}
  for _, d in ipairs(defs) do files[(d.schema or default_schema) .. "." .. d.name] = true end
  for _, k in ipairs(keys) do if not files[k] then out[#out + 1] = cat[k].label end end
  return out
end

-- Applies loaded definitions in one transaction. opts: conn, prune (bool).
-- Returns { views = { { name, action = "inserted"|"updated"|"unchanged"|"deleted",
-- fields = {keys}, live = { exists, sql = {...} } } }, counts = {...} }.
function M.apply(defs, opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  mv.init(conn)
  return mv.transaction(function(c)
    c:exec("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    local cat, names = plan.catalog(c)
    local default_schema = mv.definitions.default_schema(c)
    local views, counts, files = array(), { inserted = 0, updated = 0, unchanged = 0, deleted = 0 }, {}
    for _, def in ipairs(defs) do
      local fc, key, shown = plan.file_catalog(c, def, default_schema)
      files[key] = true
      local row = cat[key]
      local v = { name = shown, fields = array() }
      if not row then
        mv.definitions.save(to_save(fc, nil), c)
        v.action = "inserted"
      else
        v.fields = plan.changed_fields(fc, row)
        if #v.fields > 0 then
          mv.definitions.save(to_save(fc, row), c)
          v.action = "updated"
        else
          v.action = "unchanged"
        end
      end
      local sql, exists = sync_live(c, fc)
      v.live = { exists = exists, sql = sql }
      counts[v.action] = counts[v.action] + 1
      views[#views + 1] = v
    end
    if opts.prune then
      for _, n in ipairs(names) do
        if not files[n] then
          mv.definitions.delete(n, c)
          views[#views + 1] = { name = cat[n].label, action = "deleted", fields = array(), live = { sql = array() } }
          counts.deleted = counts.deleted + 1
        end
      end
    end
    table.sort(views, function(a, b) return a.name < b.name end)
    local tracked = {}
    for _, def in ipairs(defs) do
      if def.refresh_when == "changed" then
        local fc = plan.file_catalog(c, def, default_schema)
        tracked[#tracked + 1] = { schema = fc.schema_name, name = fc.name }
      end
    end
    local tracking = require("matviews.changes").install(c, tracked)
    return { views = views, counts = counts, tracking = tracking }
  end, conn)
end

return M
