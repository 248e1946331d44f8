-- Aggregates interleaved hyperfine rounds (bench/lib.sh `interleaved`): each
-- file in arg[1..] is the --export-json of one round that ran both commands
-- once. Prints per command the mean, sd, median, min and max (ms), then the
-- ratio first/second of the means, of the medians, and the median of the
-- per-round ratios (each round's two runs shared the same moment's load).
--   ./matviews bench/interleave.lua LABEL FIRST_COMMAND round.json...
local mv = require "matviews"

local label, first = arg[1], arg[2]
local times, paired = {}, {}
local order = {}
for i = 3, #arg do
  local f = assert(io.open(arg[i]))
  local doc = mv.json.decode(f:read("a"))
  f:close()
  local round = {}
  for _, r in ipairs(doc.results) do
    if not times[r.command] then times[r.command] = {}; order[#order + 1] = r.command end
    table.insert(times[r.command], r.times[1] * 1000)
    round[r.command] = r.times[1] * 1000
  end
  local other
  for c in pairs(round) do if c ~= first then other = c end end
  paired[#paired + 1] = round[first] / round[other]
end

-- mean, sd, median, min, max of a list of numbers.
local function summary(xs)
  table.sort(xs)
  local n, sum = #xs, 0
  for _, x in ipairs(xs) do sum = sum + x end
  local mean, ss = sum / n, 0
  for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
  local mid = n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
  return { mean = mean, sd = n > 1 and math.sqrt(ss / (n - 1)) or 0, median = mid, min = xs[1], max = xs[n] }
end

local second
for _, c in ipairs(order) do if c ~= first then second = c end end
local s = {}
for _, c in ipairs({ first, second }) do
  s[c] = summary(times[c])
  print(("  %-60s mean %8.1f ms (sd %6.1f)  median %8.1f  min %8.1f  max %8.1f  n %d"):format(c,
    s[c].mean, s[c].sd, s[c].median, s[c].min, s[c].max, #times[c]))
end
local p = summary(paired)
print(("%s: ratio of means %.3f, of medians %.3f, median per-round ratio %.3f"):format(label,
  s[first].mean / s[second].mean, s[first].median / s[second].median, p.median))
