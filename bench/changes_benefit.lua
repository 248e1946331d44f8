-- The benefit of `refresh --all --if-changed`: 100 views over 100 tables of
-- ROWS rows each (an aggregate with a count(DISTINCT) per view), 10 of whose tables change before
-- each round; `matviews refresh --all --if-changed --yes` against
-- `matviews refresh --all --no-if-changed --yes`, each a whole process, in alternating
-- order, ROUNDS rounds. Prints the median wall times and their ratio
-- (target: at most 0.2). Run by bench/changes_benefit.sh (its own cluster).
-- Usage: matviews bench/changes_benefit.lua BIN [ROUNDS [ROWS]]
local bin, rounds, rows = arg[1], tonumber(arg[2] or "5"), tonumber(arg[3] or "100000")
local sys = mv.core.sys
local N, CHANGED = 100, 10

local dir = assert(sys.mkdtemp()) -- private; removed at the end
local defs = {}
for i = 1, N do
  mv.exec(("DROP TABLE IF EXISTS cb_t%d CASCADE"):format(i))
  mv.exec(("CREATE TABLE cb_t%d (id int PRIMARY KEY, g int, x int)"):format(i))
  mv.exec(("INSERT INTO cb_t%d SELECT s, s %% 100, s %% 997 FROM generate_series(1, %d) s"):format(i, rows))
  defs[#defs + 1] = ('view "cb_v%d" { sql = "SELECT g, count(*) AS n, sum(x) AS total, count(DISTINCT x) AS d FROM cb_t%d GROUP BY g", refresh_when = "changed" }')
    :format(i, i)
end
mv.exec("VACUUM ANALYZE")
local f = assert(io.open(dir .. "/views.lua", "w"))
f:write(table.concat(defs, "\n"), "\n")
f:close()
local function run(cmd)
  local t = sys.monotonic_ms()
  assert(os.execute(cmd .. " >/dev/null"), cmd)
  return sys.monotonic_ms() - t
end
run(bin .. " apply --definitions " .. dir) -- creates the views, tracking on every source table
run(bin .. " refresh --all --yes")          -- every view gets a tracked snapshot

local function change()
  for i = 1, CHANGED do mv.exec(("UPDATE cb_t%d SET x = x + 1 WHERE id = 1"):format(i * 10)) end
end
local times = { changed = {}, all = {} }
local ifc, all = bin .. " refresh --all --if-changed --yes", bin .. " refresh --all --no-if-changed --yes"
for r = 1, rounds do
  local order = r % 2 == 1 and { "changed", "all" } or { "all", "changed" }
  for _, which in ipairs(order) do
    change()
    times[which][#times[which] + 1] = run(which == "changed" and ifc or all)
  end
end
local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end
local skipped = mv.query([[SELECT count(*) FILTER (WHERE meta->>'skipped' = 'unchanged')::int AS s,
  count(*)::int AS n FROM mat_view_refresh_runs]])[1]
local mc, ma = median(times.changed), median(times.all)
print(("%d views of %d rows, %d with changed sources, %d rounds"):format(N, rows, CHANGED, rounds))
print(("refresh --all --if-changed: median %.0f ms (%s)"):format(mc, table.concat(times.changed, ", ")))
print(("refresh --all:              median %.0f ms (%s)"):format(ma, table.concat(times.all, ", ")))
print(("ratio if-changed / all: %.3f (target: at most 0.2)"):format(mc / ma))
print(("runs recorded: %d, skipped as unchanged: %d"):format(skipped.n, skipped.s))
os.remove(dir .. "/views.lua")
os.remove(dir)
