-- Output for the CLI: aligned tables, one JSON document with --json, and the
-- formatting of values (NULL, numbers) shared by every command.
local cjson = require "cjson"

local M = {}

M.null = cjson.null -- NULL from the database (mv.null)

-- Text of one cell: NULL as "", floats with at most 2 decimals.
function M.cell(v)
  if v == nil or v == cjson.null then return "" end
  if math.type(v) == "float" then
    if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
    return ("%.2f"):format(v)
  end
  return tostring(v)
end

-- Renders rows as an aligned table. columns: { { key, title [, align="right"] } }.
-- Returns the text (header, rule, rows), each line ending in "\n".
function M.table(rows, columns)
  local width, cells = {}, {}
  for i, c in ipairs(columns) do width[i] = #(c[2] or c[1]) end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, c in ipairs(columns) do
      local s = M.cell(row[c[1]])
      cells[r][i] = s
      if utf8.len(s) and utf8.len(s) > width[i] then width[i] = utf8.len(s) end
    end
  end
  local function line(vals)
    local out = {}
    for i, c in ipairs(columns) do
      local s = vals[i]
      local pad = (" "):rep(width[i] - (utf8.len(s) or #s))
      out[i] = c.align == "right" and (pad .. s) or (s .. pad)
    end
    return (table.concat(out, "  "):gsub("%s+$", "")) .. "\n"
  end
  local head = {}
  for i, c in ipairs(columns) do head[i] = c[2] or c[1] end
  local buf = { line(head) }
  local rule = {}
  for i = 1, #columns do rule[i] = ("-"):rep(width[i]) end
  buf[2] = table.concat(rule, "  ") .. "\n"
  for r = 1, #cells do buf[#buf + 1] = line(cells[r]) end
  return table.concat(buf)
end

-- lua-cjson 2.1 writes an empty table as {}; tables marked with M.array
-- are written as [] even when empty.
local ARRAY_MT = { __name = "matviews.array" }
local EMPTY = "\1matviews-empty-array\1"

-- Marks t (default {}) as a JSON array; returns it.
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end

-- A copy of v where every empty marked array is the EMPTY placeholder.
local function mark_empty(v, seen)
  if type(v) ~= "table" or seen[v] then return v end
  if getmetatable(v) == ARRAY_MT and next(v) == nil then return EMPTY end
  seen[v] = true
  local c = {}
  for k, x in pairs(v) do c[k] = mark_empty(x, seen) end
  seen[v] = nil
  return c
end

-- Encodes doc as JSON text (marked empty arrays as []).
function M.encode(doc)
  local text = cjson.encode(mark_empty(doc, {}))
  return (text:gsub('"\\u0001matviews%-empty%-array\\u0001"', "[]"))
end

-- Text of an error object: strings as they are, matviews errors through
-- __tostring ("message (SQLSTATE x)"), other tables by their message.
function M.error_text(e)
  if type(e) == "string" then return e end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring then return tostring(e) end
  if type(e) == "table" and e.message then return tostring(e.message) end
  return ("(error object is a %s value)"):format(type(e))
end

-- Writes one JSON document on stdout.
function M.json(doc)
  io.stdout:write(M.encode(doc), "\n")
end

-- With --json writes doc; otherwise calls render(doc) for the text form.
function M.emit(ctx, doc, render)
  if ctx.options.json then M.json(doc) else render(doc) end
end

-- True when stdout is a terminal (progress lines redraw only there).
function M.is_tty()
  return require("matviews.core").sys.isatty(1)
end

return M
