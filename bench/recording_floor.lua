-- Benchmark helper (not a test): refreshes every other definition of the
-- current database (HALF = 0 or 1: the views split as two psql sessions
-- split them in bench/many_views.sh) through the regular refresh service
-- alone, as `refresh` runs it (lookup, REFRESH, ANALYZE, count), with
-- RECORD:
--   none     no run row at all;
--   minimal  the least a run row can cost under the run-tracking contract:
--            a row inserted as the view starts and updated with its
--            outcome when it ends, on a connection of its own, in a table
--            with its primary key only (bench_runs; no definition read,
--            lock, foreign key, report index or counters trigger).
-- bench/recording_floor.sh times two of these side by side against two
-- psql sessions.
--   ./matviews bench/recording_floor.lua none|minimal HALF
local mv = require "matviews"
local record, half = arg[1], tonumber(arg[2])
assert((record == "none" or record == "minimal") and (half == 0 or half == 1),
  "usage: matviews bench/recording_floor.lua none|minimal 0|1")

local rec = record == "minimal" and mv.conn():clone() or nil
for i, d in ipairs(mv.definitions.list()) do
  if i % 2 == half then
    local id = rec and rec:query("INSERT INTO bench_runs (defn, status, started_at) VALUES ($1, 1, clock_timestamp()) RETURNING id", d.id)[1].id
    local r = mv.services.regular_refresh(d)
    assert(r.success, d.name)
    if rec then
      rec:exec("UPDATE bench_runs SET status = 2, finished_at = clock_timestamp(), duration_ms = $2, meta = $3 WHERE id = $1",
        id, r.duration_ms or 0, mv.json.encode(r))
    end
  end
end
