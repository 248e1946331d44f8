-- Versions of a definition (mat_view_definition_versions, written by the
-- catalog's trigger on every change, see schema/010_definition_versions.lua):
-- the list with what changed between consecutive versions and a line diff
-- of the SQL (`matviews history`), and `rollback`, which makes an old
-- version current and deploys it through the same path as apply (the
-- rehearsal first, then save and replace).
local M = {}

local FIELDS = { "sql", "refresh_strategy", "unique_index_columns", "dependencies", "schedule_cron", "indexes",
  "grants", "comment", "retention", "options", "deleted" }

local SELECT = [[SELECT version, checksum, schema_name, name, sql, refresh_strategy,
  unique_index_columns::text, dependencies::text, schedule_cron, indexes::text, grants::text, comment,
  retention::text, options::text, deleted, created_by,
  ]] .. require("matviews.format").iso_sql("created_at") .. [[ AS created_at
FROM mat_view_definition_versions WHERE mat_view_definition_id = $1]]

-- The lines of s.
local function lines(s)
  local out = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = l end
  if out[#out] == "" and #out > 1 then out[#out] = nil end
  return out
end

-- A line diff of a -> b (longest common subsequence): { "  same", "- old", "+ new" }.
function M.diff(a, b)
  local x, y = lines(a), lines(b)
  local n, m = #x, #y
  local L = {}
  for i = n + 1, 1, -1 do
    L[i] = {}
    for j = m + 1, 1, -1 do
      if i > n or j > m then L[i][j] = 0
      elseif x[i] == y[j] then L[i][j] = L[i + 1][j + 1] + 1
      else L[i][j] = math.max(L[i + 1][j], L[i][j + 1]) end
    end
  end
  local out, i, j = {}, 1, 1
  while i <= n or j <= m do
    if i <= n and j <= m and x[i] == y[j] then out[#out + 1] = "  " .. x[i]; i, j = i + 1, j + 1
    elseif i <= n and (j > m or L[i + 1][j] >= L[i][j + 1]) then out[#out + 1] = "- " .. x[i]; i = i + 1
    else out[#out + 1] = "+ " .. y[j]; j = j + 1 end
  end
  return out
end

-- The versions of the definition ref (name, schema.name or id), oldest
-- first, each with `changed` (the fields that differ from the version
-- before) and `diff` (of the SQL, when it changed). Raises a usage error
-- for an unknown name.
function M.list(conn, ref)
  local d = require("matviews.targets").resolve_one(conn, ref)
  local rows = conn:query(SELECT .. " ORDER BY version", d.id)
  local prev
  for _, r in ipairs(rows) do
    r.changed = require("matviews.output").array()
    for _, f in ipairs(FIELDS) do
      if prev and prev[f] ~= r[f] then r.changed[#r.changed + 1] = f end
    end
    if prev and prev.sql ~= r.sql then r.diff = M.diff(prev.sql, r.sql) end
    prev = r
  end
  return rows, d
end

-- A definition as a definition file would declare it, from a version row
-- (what the rehearsal and apply take).
local function as_file_def(r, label)
  local json = require("cjson")
  local function dec(v) if v == nil or v == json.null then return nil end return json.decode(v) end
  local function val(v) if v == json.null then return nil end return v end
  return require("matviews.dsl").from_catalog({
    schema_name = r.schema_name, name = r.name, sql = r.sql, refresh_strategy = r.refresh_strategy,
    unique_index_columns = dec(r.unique_index_columns), dependencies = dec(r.dependencies),
    schedule_cron = val(r.schedule_cron), indexes = dec(r.indexes), grants = dec(r.grants),
    comment = val(r.comment), retention = dec(r.retention), options = dec(r.options),
  }, ("version %d of %s"):format(r.version, label), 0)
end

-- Makes version n of ref current and deploys it: the rehearsal checks it
-- (a dependent reading a column it drops refuses it before anything
-- changes), then it is saved (a new version equal to n) and the view is
-- replaced or created, indexes, grants and comment converged. Returns the
-- plan with its actions done (see matviews.converge).
function M.rollback(conn, ref, n)
  local d = require("matviews.targets").resolve_one(conn, ref)
  local r = conn:query(SELECT .. " AND version = $2", d.id, n)[1]
  if not r then require("matviews.targets").usage(("%s has no version %d"):format(d.name, n)) end
  if r.deleted then require("matviews.targets").usage(("version %d of %s is its deletion"):format(n, d.name)) end
  return require("matviews.converge").apply({ conn = conn, defs = { as_file_def(r, d.name) } })
end

return M
