-- Formatting of report values for the text tables of the CLI: timestamps,
-- ages, who ran a run, shortened errors; and argparse converters.
local cjson = require "cjson"
local null = cjson.null

local M = {}

-- A json/jsonb column read as text, decoded, and true; or the text itself
-- (a row edited by hand into something else is shown as it is), and false.
function M.json_column(text)
  local ok, value = pcall(cjson.decode, text)
  if ok then return value, true end
  return text, false
end

-- The one timestamp format of every table and --json document: ISO 8601
-- to the second with the offset, in the session's time zone (PostgreSQL's
-- TimeZone: PGTZ, else the role's or server's setting), e.g.
-- "2026-11-29T22:00:01+01:00"; UTC is "+00:00".
M.ISO_FORMAT = [[YYYY-MM-DD"T"HH24:MI:SSTZH:TZM]]

-- SQL text formatting the timestamptz expression col in that format.
function M.iso_sql(col)
  return ("to_char(%s, '%s')"):format(col, M.ISO_FORMAT)
end

-- Formats values in that format through the session: epoch seconds
-- (kind "epoch") or timestamptz text (kind "text", e.g. the recorder's UTC
-- times). values is an array that may hold nil up to n; returns an array of
-- strings, nil where the value was nil.
local function iso_list(conn, values, n, kind)
  n = n or #values
  if n == 0 then return {} end
  local list = {}
  for i = 1, n do list[i] = values[i] == nil and null or values[i] end
  local expr = kind == "epoch" and "to_timestamp(o.v::float8)" or "o.v::timestamptz"
  local out = {}
  local rows = conn:query(("SELECT o.i, %s AS t FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS o(v, i)")
    :format(M.iso_sql(expr)), list)
  for _, r in ipairs(rows) do if r.t ~= null then out[r.i] = r.t end end
  return out
end

-- Epoch seconds -> the format (see iso_list).
function M.iso_epochs(conn, times, n) return iso_list(conn, times, n, "epoch") end

-- Rewrites, in place, the timestamp fields keys of each row of rows into
-- the format (a run as the recorder returns it, for printing).
function M.iso_fields(conn, rows, keys)
  local vals, n = {}, 0
  for _, row in ipairs(rows) do
    for _, k in ipairs(keys) do
      n = n + 1
      if type(row[k]) == "string" then vals[n] = row[k] end
    end
  end
  local out, i = iso_list(conn, vals, n, "text"), 0
  for _, row in ipairs(rows) do
    for _, k in ipairs(keys) do
      i = i + 1
      if out[i] then row[k] = out[i] end
    end
  end
  return rows
end

-- Rewrites, in place, the times a run's meta records into the format: each
-- attempt's started_at and finished_at (written by the job in UTC) and
-- reconcile's reconciled_at (in the zone of the session that wrote it),
-- for each row of rows whose meta is a table; one query for all.
function M.iso_meta(conn, rows)
  local entries, metas = {}, {}
  for _, row in ipairs(rows) do
    local meta = row.meta
    if type(meta) == "table" then
      metas[#metas + 1] = meta
      if type(meta.attempts) == "table" then
        for _, a in ipairs(meta.attempts) do if type(a) == "table" then entries[#entries + 1] = a end end
      end
    end
  end
  for _, m in ipairs(metas) do
    if type(m.reconciled_at) == "string" then entries[#entries + 1] = { started_at = m.reconciled_at, meta = m } end
  end
  if #entries == 0 then return rows end
  M.iso_fields(conn, entries, { "started_at", "finished_at" })
  for _, e in ipairs(entries) do if e.meta and e.started_at then e.meta.reconciled_at = e.started_at end end
  return rows
end

-- A timestamp for a table cell: the text as it is; NULL -> nil.
function M.time(iso)
  if iso == nil or iso == null then return nil end
  return iso
end

-- "1 row", "3 rows": n and word, plural but for 1.
function M.count(n, word) return ("%d %s%s"):format(n, word, n == 1 and "" or "s") end

-- Bytes -> "512 B", "8.0 kB", "327.4 MB"; nil -> nil.
function M.bytes(b)
  if b == nil or b == null then return nil end
  local units, i = { "B", "kB", "MB", "GB", "TB" }, 1
  while b >= 1024 and i < #units do b, i = b / 1024, i + 1 end
  return i == 1 and ("%d B"):format(b) or ("%.1f %s"):format(b, units[i])
end

-- Seconds -> "45s ago", "12m ago", "3h ago", "2d ago"; NULL -> "never".
function M.age(s)
  if s == nil or s == null then return "never" end
  if s < 60 then return ("%ds ago"):format(s) end
  if s < 3600 then return ("%dm ago"):format(s // 60) end
  if s < 86400 then return ("%dh ago"):format(s // 3600) end
  return ("%dd ago"):format(s // 86400)
end

-- "host:pid" of the process that ran a run (nil when unknown).
function M.who(r)
  if r.hostname == nil or r.hostname == null then return nil end
  if r.process_pid ~= nil and r.process_pid ~= null then return r.hostname .. ":" .. r.process_pid end
  return r.hostname
end

-- The first line of s, at most n characters.
function M.shorten(s, n)
  if s == nil or s == null then return nil end
  s = tostring(s):match("^[^\n]*")
  if utf8.len(s) and utf8.len(s) > n then s = s:sub(1, utf8.offset(s, n) - 1) .. "…" end
  return s
end

-- argparse converter: "12" -> 12; nil, message for anything else.
function M.positive_integer(s)
  local n = s:match("^%d+$") and math.tointeger(tonumber(s))
  if n and n > 0 then return n end
  return nil, ("invalid count %q: use a positive integer"):format(s)
end

return M
