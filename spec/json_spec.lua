-- core.json_encode: the run recorder's JSON for a run's meta (src/json.c).
-- It must write what cjson.encode (default settings) writes, byte for byte,
-- and refuse what cjson refuses (the recorder then writes "{}" as it did
-- with cjson): every byte in strings and keys, numbers around the point
-- where %.14g turns to exponents, arrays with holes and too sparse, mixed
-- and odd keys, nesting at the limit, and random nested tables.
local mv = require "matviews"
local cjson = require "cjson"
local encode = mv.core.json_encode

-- cjson's text, or nil when it refuses v.
local function cjson_text(v)
  local ok, text = pcall(cjson.encode, v)
  return ok and text or nil
end

local function same(v, what)
  assert.are.equal(cjson_text(v), encode(v), what)
end

describe("core.json_encode", function()
  it("escapes every byte as cjson does, in values and keys", function()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    local s = table.concat(all)
    same(s, "string")
    same({ [s] = s }, "key")
    assert.are.equal('"a\\/b\\"\\\\\\n\\u0001\\u007f"', encode('a/b"\\\n\1\127'))
  end)

  it("writes numbers as cjson does (%.14g), and refuses NaN and infinities", function()
    for i, x in ipairs({ 0, -0.0, 1, -1, 1.5, 0.1, 1e300, -1e-300, 99999999999999, -99999999999999,
        100000000000000, 123456789012345, math.maxinteger, math.mininteger, 2 ^ 53, 1 / 3, 3.0, -7.25e-5 }) do
      same(x, "number " .. i)
      same({ x }, "in an array " .. i)
      same({ [x] = true }, "as a key " .. i)
    end
    for _, x in ipairs({ 0 / 0, 1 / 0, -1 / 0 }) do
      assert.is_nil(encode(x))
      assert.is_nil(encode({ a = { x } }))
    end
  end)

  it("tells arrays from objects as cjson does", function()
    for i, v in ipairs({ {}, { {} }, { [1] = 1, [3] = 3 }, { [1] = 1, [11] = 1 }, { [0] = 1 }, { [1] = "a", x = 1 },
        { [1.5] = 1 }, { [-1] = 2 }, { [1e300] = true }, mv.null, { mv.null }, { a = mv.null }, true, false, "s" }) do
      same(v, "table " .. i)
    end
    assert.are.equal("[1,null,3]", encode({ [1] = 1, [3] = 3 }))
    assert.are.equal("{}", encode({}))
  end)

  it("refuses what cjson refuses", function()
    for i, v in ipairs({ { [1] = 1, [20] = 3 }, { f = print }, { [true] = 1 }, { [{}] = 1 },
        { co = coroutine.create(print) }, { io.stdout } }) do
      assert.is_nil(cjson_text(v), "cjson refuses " .. i)
      assert.is_nil(encode(v), "refused " .. i)
    end
  end)

  it("nests up to cjson's limit of 1000", function()
    local deep, t = {}, nil
    t = deep
    for _ = 1, 999 do t[1] = {}; t = t[1] end
    same(deep, "depth 1000")
    assert.is_not_nil(encode(deep))
    t[1] = {}
    assert.is_nil(encode(deep))
    same(deep, "depth 1001")
  end)

  it("writes random nested tables as cjson does", function()
    local strs = { "", "a", 'ab"c', "x/y", "tab\tnl\n", "é✓", "\0\1\127", 'REFRESH MATERIALIZED VIEW "public"."v_1"' }
    local seed = 1
    local function rand(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
    local function value(d)
      local r = rand(d > 3 and 6 or 9)
      if r == 1 then return strs[rand(#strs)]
      elseif r == 2 then return rand(2000000) - 1000000
      elseif r == 3 then return rand(1000000) / 7 * 10 ^ (rand(41) - 21)
      elseif r == 4 then return rand(2) == 1
      elseif r == 5 then return mv.null
      elseif r == 6 then return rand(2 ^ 30) * 100000
      elseif r <= 8 then
        local a = {}
        for i = 1, rand(7) - 1 do a[i] = value(d + 1) end
        if rand(5) == 1 then a[rand(12)] = value(d + 1) end
        return a
      end
      local o = {}
      for _ = 1, rand(7) - 1 do
        local k = rand(5) > 1 and strs[rand(#strs)] .. rand(100) or rand(34) - 4
        o[k] = value(d + 1)
      end
      return o
    end
    for i = 1, 3000 do same(value(0), "random " .. i) end
  end)
end)
