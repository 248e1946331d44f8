-- One recorded run in full, for `matviews runs show OP:ID`: its row, the
-- view's label, whether it is orphaned, meta decoded; and its text: times,
-- who ran it, lock wait, every attempt, the error in full, the SQL
-- executed and the whole meta pretty-printed.
local cjson = require "cjson"
local catalog = require "matviews.catalog"
local targets = require "matviews.targets"
local fmt = require "matviews.format"

local M = {}

local null = cjson.null

-- "refresh:4" or "refresh/4" -> "refresh", 4; raises a usage error.
function M.parse(ref)
  local op, id = tostring(ref or ""):match("^(%a+)[:/](%d+)$")
  id = id and math.tointeger(tonumber(id))
  if not op or not catalog.RUN_TABLES[op] or not id then
    targets.usage(("invalid run %q: use OP:ID, OP one of create, refresh, delete (e.g. refresh:4)"):format(tostring(ref)))
  end
  return op, id
end

-- v with every integral float (JSON gives numbers back as floats) an
-- integer, in place.
local function integers(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = integers(x) end
  elseif math.type(v) == "float" then
    return math.tointeger(v) or v
  end
  return v
end

-- The run op/id with the columns of mv.runs; raises when there is none.
function M.get(op, id, conn)
  conn = conn or require("matviews").conn()
  local iso = fmt.iso_sql
  local sql = ([[
SELECT '%s' AS op, r.id, %s AS view, r.mat_view_definition_id AS definition_id, r.status, %s AS orphaned,
  %s AS started_at, %s AS finished_at, r.duration_ms, %s AS rows_count, r.error, r.meta::text AS meta,
  r.backend_pid, r.hostname, r.process_pid, %s AS created_at
FROM %s r JOIN mat_view_definitions d ON d.id = r.mat_view_definition_id
WHERE r.id = $1]]):format(op, require("matviews.definitions").label_sql("d"), require("matviews.jobs").orphaned_sql("r"),
    iso("r.started_at"), iso("r.finished_at"), op == "refresh" and "r.rows_count" or "NULL::integer",
    iso("r.created_at"), catalog.RUN_TABLES[op])
  local r = targets.query(conn, sql, id)[1]
  if not r then
    require("matviews").error({ message = ("no %s run %d: `matviews runs --op %s` lists them"):format(op, id, op) })
  end
  r.status = catalog.STATUS[r.status] or tostring(r.status)
  local meta, ok = require("matviews.format").json_column(r.meta)
  r.meta = ok and integers(meta) or meta
  require("matviews.format").iso_meta(conn, { r })
  return r
end

local function present(v) return v ~= nil and v ~= null end

-- "message (SQLSTATE x)" of an error table of meta, or its text.
local function error_line(e)
  if type(e) ~= "table" then return present(e) and tostring(e) or "" end
  local s = tostring(e.message or "")
  if present(e.sqlstate) then s = s .. " (SQLSTATE " .. e.sqlstate .. ")" end
  return s
end

-- Every line of text, indented by two spaces.
local function indent(text)
  return "  " .. tostring(text):gsub("\n", "\n  ")
end

-- For a run that failed on a lock timeout (SQLSTATE 55P03): how many
-- attempts were made and who holds a lock on the view now (pg_locks), with
-- what to do; nil for any other run.
function M.lock_note(run, conn)
  local meta = type(run.meta) == "table" and run.meta or {}
  if type(meta.error) ~= "table" or meta.error.sqlstate ~= "55P03" or type(meta.view) ~= "string" then return nil end
  local n = type(meta.attempts) == "table" and math.max(1, #meta.attempts) or 1
  local ok, rows = pcall(function()
    return (conn or require("matviews").conn()):query([[
SELECT DISTINCT a.pid, coalesce(nullif(a.application_name, ''), '?') AS app, coalesce(a.state, '?') AS state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass($1) AND l.pid <> pg_backend_pid()
ORDER BY a.pid LIMIT 3]], meta.view)
  end)
  local s = "after " .. fmt.count(n, "attempt")
  if not ok or #rows == 0 then return s .. "; the lock was released since: run it again" end
  local who = {}
  for i, r in ipairs(rows) do who[i] = ("pid %d (%s, %s)"):format(r.pid, r.app, r.state) end
  return ("%s; %s is locked by %s: wait for it, or end it with SELECT pg_terminate_backend(%d)"):format(
    s, meta.view, table.concat(who, ", "), rows[1].pid)
end

-- The run as text, every field in full.
function M.text(r)
  local meta = type(r.meta) == "table" and r.meta or {}
  local lines = { ("%s:%d of %s: %s%s"):format(r.op, r.id, r.view, r.status, r.orphaned and " (orphaned)" or "") }
  local function field(name, v)
    if present(v) and v ~= "" then lines[#lines + 1] = ("  %-10s %s"):format(name, tostring(v)) end
  end
  field("created", fmt.time(r.created_at))
  field("started", fmt.time(r.started_at))
  field("finished", fmt.time(r.finished_at))
  field("duration", present(r.duration_ms) and (r.duration_ms .. " ms") or nil)
  field("rows", r.rows_count)
  field("run by", fmt.who(r) and (fmt.who(r) .. (present(r.backend_pid) and (", backend pid " .. r.backend_pid) or "")))
  field("strategy", meta.strategy)
  field("lock wait", present(meta.lock_wait_ms) and (meta.lock_wait_ms .. " ms") or nil)
  local attempts = type(meta.attempts) == "table" and meta.attempts or {}
  field("attempts", #attempts > 0 and #attempts or nil)
  for _, a in ipairs(attempts) do
    lines[#lines + 1] = ("    %d  %-8s %s%s"):format(a.attempt or 0, tostring(a.status or ""),
      present(a.duration_ms) and (a.duration_ms .. " ms") or "", present(a.error) and ("  " .. error_line(a.error)) or "")
  end
  if present(r.error) then
    local st = type(meta.error) == "table" and present(meta.error.sqlstate) and (" (SQLSTATE " .. meta.error.sqlstate .. ")") or ""
    lines[#lines + 1] = "error" .. st .. ":"
    lines[#lines + 1] = indent(r.error)
  end
  local sql = type(meta.sql) == "table" and meta.sql or (type(meta.response) == "table" and meta.response.sql) or nil
  if type(sql) == "table" and #sql > 0 then
    lines[#lines + 1] = "sql executed:"
    for _, s in ipairs(sql) do lines[#lines + 1] = indent(tostring(s) .. ";") end
  end
  lines[#lines + 1] = "meta:"
  lines[#lines + 1] = indent(require("matviews.repl").pretty(r.meta))
  return table.concat(lines, "\n") .. "\n"
end

return M
