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
