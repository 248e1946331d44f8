-- Formatting of report values for the text tables of the CLI: timestamps,
-- ages, who ran a run, shortened errors; and argparse converters.
local null = require("cjson").null

local M = {}

-- "2026-11-26T11:24:44.123Z" -> "2026-11-26 11:24:44"; NULL -> nil.
function M.time(iso)
  if iso == nil or iso == null then return nil end
  return (iso:gsub("^(%d+%-%d+%-%d+)T(%d+:%d+:%d+).*$", "%1 %2"))
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
