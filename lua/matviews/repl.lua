-- The REPL of `matviews repl`: reads Lua chunks, runs them with the global
-- `mv`, prints what they return. As lua.c does: `return <line>` is tried
-- first, a chunk whose syntax error ends in `<eof>` continues on the next
-- line, errors are printed and the loop goes on. Tables are pretty-printed
-- (nesting, cycles); query results (arrays of rows) print as aligned tables.
-- On a terminal, lines are read with readline (matviews.core.repl: editing,
-- history in $MATVIEWS_HISTORY or ~/.matviews_history, tab completion of
-- fields, Ctrl-C drops the line); from a pipe, plain lines, no prompts.
local output = require "matviews.output"

local M = {}

M.PROMPT, M.PROMPT2 = "mv> ", "mv>> "
M.HISTORY_MAX = 1000
M.WIDTH = 78       -- a table fitting in this many columns prints on one line
M.MAX_DEPTH = 12   -- deeper tables print as {...}

local NULL = require("cjson").null
local IDENT = "^[%a_][%w_]*$"
local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or
  repeat return then true until while]]):gmatch("%a+") do KEYWORDS[w] = true end

-- A string as a Lua literal, escapes only where needed.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r", ['"'] = '\\"', ["\\"] = "\\\\" }
    return named[c] or ("\\%03d"):format(c:byte())
  end) .. '"'
end

-- Text of a value that is no table (strings quoted).
local function scalar(v)
  if type(v) == "string" then return quote(v) end
  if v == NULL then return "null" end
  return tostring(v)
end

local function key_text(k)
  if type(k) == "string" and k:match(IDENT) and not KEYWORDS[k] then return k end
  return "[" .. scalar(k) .. "]"
end

-- Orders keys: numbers by value, then strings, then the rest by text.
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local rank = { number = 1, string = 2 }
    return (rank[ta] or 3) < (rank[tb] or 3) or ((rank[ta] or 3) == (rank[tb] or 3) and ta < tb)
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local render

-- The entries of table t, rendered: array part, then other keys sorted.
local function entries(t, indent, path, depth)
  local items, n = {}, rawlen(t)
  for i = 1, n do items[#items + 1] = render(rawget(t, i), indent, path, depth) end
  local keys = {}
  for k in next, t do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  for _, k in ipairs(keys) do
    items[#items + 1] = key_text(k) .. " = " .. render(rawget(t, k), indent, path, depth)
  end
  return items
end

-- Renders v; indent is the column the value starts at, path the tables
-- being rendered (a table met again on it is a cycle).
function render(v, indent, path, depth)
  if type(v) ~= "table" then return scalar(v) end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__tostring then return tostring(v) end
  if path[v] then return "<cycle>" end
  if depth >= M.MAX_DEPTH then return "{...}" end
  path[v] = true
  local items = entries(v, indent + 2, path, depth + 1)
  path[v] = nil
  if #items == 0 then return "{}" end
  local flat = "{ " .. table.concat(items, ", ") .. " }"
  if indent + #flat <= M.WIDTH and not flat:find("\n", 1, true) then return flat end
  local pad = (" "):rep(indent + 2)
  return "{\n" .. pad .. table.concat(items, ",\n" .. pad) .. "\n" .. (" "):rep(indent) .. "}"
end

-- Pretty text of any value: nested tables indented, cycles as <cycle>.
function M.pretty(v)
  return render(v, 0, {}, 0)
end

-- The column names of rows: the select order a query recorded in the
-- array's metatable, else every key of every row, sorted.
local function row_columns(rows)
  local mt = getmetatable(rows)
  local names, seen = {}, {}
  local from = type(mt) == "table" and type(mt.columns) == "table" and mt.columns or nil
  if not from then
    from = {}
    for _, row in ipairs(rows) do for k in pairs(row) do from[#from + 1] = k end end
    table.sort(from)
  end
  for _, k in ipairs(from) do
    if not seen[k] then seen[k] = true; names[#names + 1] = k end
  end
  return names
end

-- True when v looks like a query result: what mv.query returned, or a
-- non-empty array of tables with string keys and no table values.
function M.is_rows(v)
  if type(v) ~= "table" then return false end
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.columns then return true end
  local n, count = #v, 0
  if n == 0 then return false end
  for _ in pairs(v) do count = count + 1 end
  if count ~= n then return false end
  local keys = 0
  for _, row in ipairs(v) do
    if type(row) ~= "table" or getmetatable(row) then return false end
    for k, x in pairs(row) do
      if type(k) ~= "string" or type(x) == "table" then return false end
      keys = keys + 1
    end
  end
  return keys > 0
end

-- Rows as an aligned table (output.table) and a "(N rows)" line, as psql.
function M.rows_text(rows)
  local cols = {}
  for i, name in ipairs(row_columns(rows)) do
    local numeric = true
    for _, row in ipairs(rows) do
      local x = row[name]
      if x ~= nil and x ~= NULL and type(x) ~= "number" then numeric = false end
    end
    cols[i] = { name, name, align = numeric and #rows > 0 and "right" or nil }
  end
  local text = #cols > 0 and output.table(rows, cols) or ""
  return text .. ("(%d row%s)"):format(#rows, #rows == 1 and "" or "s")
end

-- The guide `help` prints.
M.GUIDE = [[
matviews REPL: Lua 5.4 with `mv` connected. A few of its functions:
  mv.query(sql, ...)                    rows of a query ($1, $2 ... are the values given)
  mv.exec(sql, ...)                     run a statement; the number of rows it touched
  mv.transaction(function(conn) ... end)  commit, or roll back on error
  mv.create(NAME), mv.refresh(NAME), mv.delete(NAME)  recorded runs
  mv.refresh_all{ parallel = 4 }        every view in dependency order
  mv.runs{ view = NAME, limit = 10 }, mv.stats{}, mv.report{}, mv.prune{ dry_run = true }
  mv.definitions.list(), mv.services.create_view(NAME), mv.db.status()
An expression prints its value (query results as tables); an unfinished chunk continues on the
next line. Tab completes names and fields (mv.st<Tab>).
Ctrl-C cancels the running query or drops the line; Ctrl-D or os.exit() leaves.]]

-- `help` in the REPL: prints the guide when called, and is it as a value.
M.HELP = setmetatable({}, {
  __name = "matviews.help",
  __call = function() io.stdout:write(M.GUIDE, "\n") end,
  __tostring = function() return M.GUIDE end,
})

-- The text printed for a value a chunk returned.
function M.format(v)
  if v == M.HELP then return M.GUIDE end
  if type(v) == "string" then return v end
  if M.is_rows(v) then return M.rows_text(v) end
  return M.pretty(v)
end

M.error_text = output.error_text

-- Looks key up in v without calling code: raw fields, then __index tables.
local function field(v, key)
  for _ = 1, 10 do
    if type(v) == "table" then
      local x = rawget(v, key)
      if x ~= nil then return x end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(idx) ~= "table" then return nil end
    v = idx
  end
end

-- The identifier keys reachable from v (its own, then its __index tables);
-- only functions when methods is set.
local function names(v, methods)
  local out, seen = {}, {}
  for _ = 1, 10 do
    if type(v) == "table" then
      for k, x in next, v do
        if type(k) == "string" and k:match(IDENT) and not seen[k] and (not methods or type(x) == "function") then
          seen[k] = true; out[#out + 1] = k
        end
      end
    end
    local mt = getmetatable(v)
    local idx = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(idx) ~= "table" then break end
    v = idx
  end
  return out
end

-- Completion candidates for text (the word before the cursor), e.g.
-- "mv.db.st" -> { "mv.db.start", "mv.db.status", "mv.db.stop" }; "conn:qu"
-- lists methods. env is where names start (the globals).
function M.complete(text, env)
  env = env or _G
  local head, sep, part = text:match("^(.-)([%.:])([%w_]*)$")
  local base, pool
  if head then
    if not head:match("^[%a_][%w_]*$") and not head:match("^[%a_][%w_%.]*[%w_]$") then return {} end
    base = env
    for k in head:gmatch("[^%.]+") do
      base = field(base, k)
      if base == nil then return {} end
    end
    pool = names(base, sep == ":")
  else
    if not text:match("^[%a_]?[%w_]*$") then return {} end
    head, sep, part = "", "", text
    pool = names(env)
    for k in pairs(KEYWORDS) do pool[#pool + 1] = k end
  end
  local out = {}
  for _, k in ipairs(pool) do
    if k:sub(1, #part) == part then out[#out + 1] = head .. sep .. k end
  end
  table.sort(out)
  return out
end

-- Reads one chunk with read(prompt): returns a function, or nil and an
-- error message (syntax), or "eof" / "cancel". add(text) records history.
function M.read_chunk(read, add)
  local line = read(M.PROMPT)
  if line == nil then return "eof" end
  if line == false then return "cancel" end
  local fn = load("return " .. line, "=stdin")
  if fn then add(line); return fn end
  local buf = line
  while true do
    local f, err = load(buf, "=stdin")
    if f then add(buf); return f end
    if not err:find("<eof>$") then add(buf); return nil, err end
    local more = read(M.PROMPT2)
    if more == false then return "cancel" end
    if more == nil then add(buf); return nil, err end
    buf = buf .. "\n" .. more
  end
end

-- Prints the values a chunk returned: tab-separated as lua.c, one per line
-- when one of them spans lines.
function M.print_results(res)
  if res.n < 2 then return end
  local parts, multi = {}, false
  for i = 2, res.n do
    parts[#parts + 1] = M.format(res[i])
    if parts[#parts]:find("\n", 1, true) then multi = true end
  end
  io.stdout:write(table.concat(parts, multi and "\n" or "\t"), "\n")
end

-- Runs one chunk; returns nothing to go on, or the exit code at EOF.
local function step(read, add, tty)
  local fn, err = M.read_chunk(read, add)
  if fn == "eof" then
    if tty then io.stdout:write("\n") end
    return 0
  elseif fn == "cancel" then
    return nil
  end
  if fn then
    local res = table.pack(xpcall(fn, M.error_text))
    if res[1] then M.print_results(res) else err = res[2] end
  end
  io.stdout:flush()
  if err then io.stderr:write(err, "\n"); io.stderr:flush() end
  return nil
end

-- The history file: $MATVIEWS_HISTORY ("" for none), else ~/.matviews_history.
function M.history_path()
  local p = os.getenv("MATVIEWS_HISTORY")
  if p then return p ~= "" and p or nil end
  local home = os.getenv("HOME")
  return home and home ~= "" and (home .. "/.matviews_history") or nil
end

-- On a terminal: the banner, and the connection opened now so that `mv` is
-- ready (a failure is printed; the REPL still runs).
local function greet(mv)
  io.stdout:write(("matviews %s (%s). mv is ready; Ctrl-D exits, Ctrl-C cancels.\n"):format(mv.version, _VERSION))
  local ok, conn = pcall(mv.conn)
  if ok then
    local i = conn:info()
    io.stdout:write(("connected to %s as %s (backend pid %d)\n"):format(i.dbname, i.user, i.pid))
  else
    io.stderr:write("not connected: ", M.error_text(conn), "\n")
  end
  io.stdout:flush()
end

-- Runs the REPL until EOF; returns the exit code (0). opts.mv: the module;
-- opts.tty: force terminal (true) or pipe (false) mode, else stdin decides.
function M.run(opts)
  opts = opts or {}
  local mv = opts.mv or require "matviews"
  local core = mv.core
  local tty = opts.tty
  if tty == nil then tty = core.sys.isatty(0) end
  _G.mv = mv
  if _G.help == nil then _G.help = M.HELP end
  local read, add
  if tty then
    local hist = M.history_path()
    if hist then core.repl.history_load(hist, M.HISTORY_MAX) end
    core.repl.set_completer(function(text) return M.complete(text, _G) end)
    read = core.repl.readline
    add = function(text) if text:find("%S") then core.repl.history_add(text, hist, M.HISTORY_MAX) end end
    greet(mv)
  else
    read = function() return io.stdin:read("l") end
    add = function() end
  end
  return core.repl.loop(function() return step(read, add, tty) end)
end

return M
