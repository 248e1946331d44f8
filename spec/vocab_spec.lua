-- One vocabulary: src/vocab.h (C) and matviews.vocab (Lua) define the same
-- status codes, operations and run tables, strategies, row count
-- strategies, service statuses, lock key and build relation prefix; this
-- spec reads the header and checks them against the module, and that the
-- modules which speak them refer to the same tables.
local vocab = require "matviews.vocab"

local function header()
  local f = assert(io.open("src/vocab.h"))
  local s = f:read("a")
  f:close()
  return s
end

-- The strings of the initializer `#define NAME { "a", "b" }`.
local function list(h, name)
  local body = h:match("#define " .. name .. " (%b{})")
  assert(body, name .. " is not in src/vocab.h")
  local out = {}
  for s in body:gmatch('"([^"]*)"') do out[#out + 1] = s end
  return out
end

describe("the vocabulary", function()
  local h = header()

  it("has the same status codes in C and Lua", function()
    local names = list(h, "MV_RUN_STATUS_NAMES")
    for code, name in ipairs(names) do
      assert.are.equal(name, vocab.STATUS[code - 1])
      assert.are.equal(code - 1, vocab.STATUS_CODE[name])
      local enum = h:match("MV_RUN_" .. name:upper() .. " = (%d+)")
      assert.are.equal(code - 1, tonumber(enum))
    end
    assert.are.equal(#names, #vocab.STATUS + 1)
  end)

  it("has the same operations and run tables", function()
    local ops, tables = list(h, "MV_OP_NAMES"), list(h, "MV_RUN_TABLE_NAMES")
    assert.are.same(ops, vocab.OPS)
    for i, op in ipairs(ops) do assert.are.equal(tables[i], vocab.RUN_TABLES[op]) end
  end)

  it("has the same strategies, row count strategies and service statuses", function()
    for i, name in ipairs(list(h, "MV_STRATEGY_NAMES")) do
      assert.are.equal(name, vocab.STRATEGY_NAMES[i - 1])
      assert.are.equal(i - 1, vocab.STRATEGIES[name])
    end
    assert.are.same(list(h, "MV_ROW_COUNT_NAMES"), vocab.ROW_COUNT_LIST)
    assert.are.same(list(h, "MV_SERVICE_STATUS_NAMES"), vocab.SERVICE_STATUS)
  end)

  it("has the same lock key and build relation prefix", function()
    assert.are.equal(h:match('#define MV_BUILD_PREFIX "([^"]+)"'), vocab.BUILD_PREFIX)
    local a, b, c = h:match('#define MV_LOCK_KEY_SQL%(schema, name%) "([^"]*)" schema "([^"]*)" name "([^"]*)"')
    assert.is_truthy(a)
    assert.are.equal(vocab.lock_key_sql("S", "N"), a .. "S" .. b .. "N" .. c)
  end)

  it("has the same build relation name in SQL", function()
    local body = h:match("#define MV_BUILD_RELATION_SQL%(name, pid%) (.-)\n\n")
    assert.is_truthy(body)
    -- expand the macro: its string literals, MV_BUILD_PREFIX and the two arguments, concatenated
    local args, out, pos = { MV_BUILD_PREFIX = vocab.BUILD_PREFIX, name = "N", pid = "P" }, {}, 1
    while true do
      local s1, e1, str = body:find('^[%s\\]*"([^"]*)"', pos)
      local s2, e2, word = body:find("^[%s\\]*([%a_]+)", pos)
      if s1 then out[#out + 1], pos = str, e1 + 1
      elseif s2 then out[#out + 1], pos = assert(args[word], word), e2 + 1
      else break end
    end
    local c = table.concat(out)
    assert.are.equal(vocab.build_relation_sql("N", "P"), c)
  end)

  it("is the one the other modules use", function()
    local catalog, defs = require "matviews.catalog", require "matviews.definitions"
    assert.are.equal(vocab.STATUS, catalog.STATUS)
    assert.are.equal(vocab.RUN_TABLES, catalog.RUN_TABLES)
    assert.are.equal(vocab.STRATEGIES, defs.STRATEGIES)
    assert.are.equal(vocab.ROW_COUNTS, defs.ROW_COUNTS)
  end)
end)

-- The text of a file.
local function slurp(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

-- The string literals of a Lua or C source, each { text, line }: comments
-- skipped, long strings ([[...]], [==[...]==]) read whole.
local function literals(src, lang)
  local out, i, n = {}, 1, #src
  local function line_at(pos) return select(2, src:sub(1, pos):gsub("\n", "")) + 1 end
  while i <= n do
    local c = src:sub(i, i)
    if lang == "lua" and src:sub(i, i + 1) == "--" then
      local eq = src:match("^%[(=*)%[", i + 2)
      if eq then
        local _, e = src:find("]" .. eq .. "]", i, true)
        i = (e or n) + 1
      else
        i = (src:find("\n", i, true) or n) + 1
      end
    elseif lang == "c" and src:sub(i, i + 1) == "/*" then
      i = (select(2, src:find("*/", i + 2, true)) or n) + 1
    elseif lang == "c" and src:sub(i, i + 1) == "//" then
      i = (src:find("\n", i, true) or n) + 1
    elseif lang == "lua" and src:match("^%[=*%[", i) then
      local eq = src:match("^%[(=*)%[", i)
      local s = i + #eq + 2
      local e1, e2 = src:find("]" .. eq .. "]", s, true)
      out[#out + 1] = { src:sub(s, (e1 or n + 1) - 1), line_at(i) }
      i = (e2 or n) + 1
    elseif c == '"' or c == "'" then
      local j, buf = i + 1, {}
      while j <= n and src:sub(j, j) ~= c and src:sub(j, j) ~= "\n" do
        local d = src:sub(j, j)
        if d == "\\" then buf[#buf + 1] = src:sub(j, j + 1); j = j + 2
        else buf[#buf + 1] = d; j = j + 1 end
      end
      if lang == "lua" or c == '"' then out[#out + 1] = { table.concat(buf), line_at(i) } end
      i = j + 1
    else
      i = i + 1
    end
  end
  return out
end

-- The places in text (SQL in a string literal) where a status column is
-- compared with, or set to, a number that is a status code: "status = 2",
-- "SET status = 3", "status <> 1", "status IN (2, 3)". Other numbers, and
-- columns that merely end in status (last_status), are not flagged.
-- Returns the lines they are on, and how many lines into text each is.
local function status_literals(text)
  local found, lines = {}, {}
  local function check(pos, num)
    if vocab.JOB_STATUS[tonumber(num)] then -- the line it is on, and how many lines into text
      found[#found + 1] = text:sub(1, pos):match("[^\n]*$") .. text:sub(pos + 1):match("^[^\n]*")
      lines[#found] = select(2, text:sub(1, pos):gsub("\n", ""))
    end
  end
  local lower = text:lower()
  for _, op in ipairs({ "=", "<>", "!=", "in%s*%(" }) do
    for pos, num in lower:gmatch("()%f[%w_]status%s*" .. op .. "%s*(%d+)%f[^%w_.]") do
      -- "=" alone: not the tail of "==", "<=", ">=", "~=" (the column is on the left)
      if op ~= "=" or not lower:sub(pos):match("^status%s*=%s*=") then check(pos, num) end
    end
  end
  return found, lines
end

-- The numeric status literals in the SQL of lua/ (schema steps aside: they
-- are history) and src/: { "file:line: text" }.
local function stray_status_literals()
  local out = {}
  local p = assert(io.popen("find lua src -type f \\( -name '*.lua' -o -name '*.c' -o -name '*.h' \\) "
    .. "-not -path 'lua/matviews/schema/*' | sort"))
  for path in p:lines() do
    for _, lit in ipairs(literals(slurp(path), path:match("%.lua$") and "lua" or "c")) do
      local hits, lines = status_literals(lit[1])
      for k, hit in ipairs(hits) do out[#out + 1] = ("%s:%d: %s"):format(path, lit[2] + lines[k], hit) end
    end
  end
  p:close()
  return out
end

describe("the status codes", function()
  it("of the queue extend the run statuses, and the queue uses them", function()
    for code, name in pairs(vocab.STATUS) do assert.are.equal(name, vocab.JOB_STATUS[code]) end
    assert.are.equal(4, vocab.JOB_STATUS_CODE.cancelled)
    for code, name in pairs(vocab.JOB_STATUS) do assert.are.equal(code, vocab.JOB_STATUS_CODE[name]) end
    local queue = require "matviews.queue"
    assert.are.equal(vocab.JOB_STATUS, queue.STATUS)
    assert.are.equal(vocab.JOB_STATUS_CODE, queue.STATUS_CODE)
    assert.are.same({ "pending", "running", "success", "failed", "cancelled" }, vocab.JOB_STATUS_LIST)
  end)

  it("agree with the schema steps, which spell them as numbers (history is not rewritten)", function()
    local runs, jobs = slurp("lua/matviews/schema/001_catalog.lua"), slurp("lua/matviews/schema/002_jobs.lua")
    assert.are.equal(vocab.STATUS_CODE.pending, tonumber(runs:match("status%s+integer NOT NULL DEFAULT (%d+)")))
    assert.are.equal(vocab.JOB_STATUS_CODE.pending, tonumber(jobs:match("status%s+integer NOT NULL DEFAULT (%d+)")))
    assert.are.equal(vocab.JOB_STATUS_CODE.pending, tonumber(jobs:match("index_matviews_jobs_pending .- WHERE status = (%d+)")))
    local counters = slurp("lua/matviews/schema/008_run_counters.lua")
    assert.are.equal(vocab.STATUS_CODE.success, tonumber(counters:match("CASE NEW.status WHEN (%d+) THEN 'success'")))
    local a, b = counters:match("NEW.status NOT IN %((%d+), (%d+)%)")
    assert.are.same({ vocab.STATUS_CODE.success, vocab.STATUS_CODE.failed }, { tonumber(a), tonumber(b) })
  end)

  it("and the other names, listed in messages, read as they did when spelt out", function()
    assert.are.equal("create, refresh or delete", vocab.OPS_TEXT)
    assert.are.equal('"regular", "concurrent" or "swap"', vocab.quoted(vocab.STRATEGY_LIST, " or "))
    assert.are.equal('"none", "estimated", "exact"', vocab.quoted(vocab.ROW_COUNT_LIST))
    assert.are.same({ "pending", "running", "success", "failed" }, vocab.STATUS_LIST)
  end)

  it("are written into SQL by name", function()
    assert.are.equal("status IN (2, 3) FROM mat_view_refresh_runs",
      vocab.sql("status IN ({success}, {failed}) FROM {refresh_runs}"))
    assert.are.equal("status = 4", vocab.sql("status = {cancelled}", vocab.JOB_STATUS_CODE))
    assert.has_error(function() vocab.sql("status = {cancelled}") end, "unknown name {cancelled} in SQL")
    assert.has_error(function() vocab.sql("status = {sucess}") end, "unknown name {sucess} in SQL")
  end)

  it("are never spelt as numbers in the SQL of lua/ (outside schema steps) or src/", function()
    -- the guard itself: it sees a literal in SQL, and nothing else
    assert.are.same({ "WHERE r.status = 2" }, status_literals("WHERE r.status = 2"))
    assert.are.same({ "UPDATE t SET status = 3, x = 1" }, status_literals("a\nUPDATE t SET status = 3, x = 1\nb"))
    assert.are.same({ "AND r.status IN (2, 3)" }, status_literals("AND r.status IN (2, 3)"))
    assert.are.same({ "status <> 0" }, status_literals("status <> 0"))
    for _, fine in ipairs({ "status = $2", "status = {success}", "last_status = 2", "status == 2",
                            "status = 200", "status = 2.5", "x <= status", "jobs_status = 1" }) do
      assert.are.same({}, status_literals(fine), fine)
    end
    local lits = literals('local status = 0 -- status = 1\nx = [[status = 2]] .. "a" ', "lua")
    assert.are.same({ { "status = 2", 2 }, { "a", 2 } }, lits)
    assert.are.same({ { "st = 1", 1 } }, literals('int status = 0; /* "status = 1" */ f("st = 1");', "c"))
    assert.are.same({}, stray_status_literals())
  end)
end)
