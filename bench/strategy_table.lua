-- See bench/strategy_table.sh: the built-in strategies called through the
-- strategy table vs their services called directly, interleaved rounds in
-- one process on one connection. Prints figures; asserts nothing.
--   ./matviews bench/strategy_table.lua ROUNDS
local mv = require "matviews"
local strategies = require "matviews.strategies"
local clock = mv.core.sys.monotonic_ms

local rounds = math.tointeger(tonumber(arg and arg[1])) or 200
local SERVICE = { regular = "regular_refresh", concurrent = "concurrent_refresh", swap = "swap_refresh" }

-- The two ways for one definition: the service, and the table as the job
-- flow goes through it (lookup, context, protected call, close).
local function ways(d)
  local opts = { conn = mv.conn(), row_count_strategy = "estimated" }
  local job = { defn = d, options = opts, args = {} }
  local service = mv.services[SERVICE[d.refresh_strategy]]
  return function()
    local r = service(d, opts)
    assert(r.success, r.error and r.error.message)
  end, function()
    local s = strategies.check(d)
    local ctx = strategies.context(job)
    local ok, r = xpcall(s.fn, function(e) return e end, ctx)
    ctx:close()
    assert(ok and r.success, tostring(ok and r.error and r.error.message or r))
  end
end

local function mean(t) local s = 0 for _, x in ipairs(t) do s = s + x end return s / #t end
local function median(t)
  local c = {}
  for i, x in ipairs(t) do c[i] = x end
  table.sort(c)
  return #c % 2 == 1 and c[(#c + 1) // 2] or (c[#c // 2] + c[#c // 2 + 1]) / 2
end

for _, name in ipairs({ "st_regular", "st_concurrent", "st_swap" }) do
  local d = mv.definitions.get(name)
  local direct, routed = ways(d)
  for _ = 1, 5 do direct(); routed() end -- warm-up
  local a, b = {}, {}
  for i = 1, rounds do
    local first, second, ta, tb = direct, routed, a, b
    if i % 2 == 0 then first, second, ta, tb = routed, direct, b, a end
    local t = clock(); first(); ta[#ta + 1] = clock() - t
    t = clock(); second(); tb[#tb + 1] = clock() - t
  end
  print(("%-10s %d rounds: direct mean %.3f ms (median %.3f), through the table mean %.3f ms (median %.3f); "
    .. "table / direct: means %.3f, medians %.3f; difference of means %+.3f ms")
    :format(d.refresh_strategy, rounds, mean(a), median(a), mean(b), median(b), mean(b) / mean(a),
      median(b) / median(a), mean(b) - mean(a)))
end

-- The table's own work alone (no SQL): lookup, context, protected call of a
-- function that returns at once, close.
local d = mv.definitions.get("st_regular")
local job = { defn = d, options = { conn = mv.conn() }, args = {} }
local noop = function() return { success = true } end
local n = 100000
local t = clock()
for _ = 1, n do
  strategies.check(d)
  local ctx = strategies.context(job)
  xpcall(noop, function(e) return e end, ctx)
  ctx:close()
end
print(("the table's own work per refresh (lookup, context, protected call, close): %.2f us over %d calls")
  :format((clock() - t) * 1000 / n, n))
