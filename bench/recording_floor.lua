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
--            lock, foreign key, report index or counters trigger);
--   one      the same rows with one statement per view: the previous
--            view's update and this view's insert together (one round trip
--            and one transaction per view; the last update alone).
-- bench/recording_floor.sh times two of these side by side against two
-- psql sessions.
--   ./matviews bench/recording_floor.lua none|minimal|one HALF
local mv = require "matviews"
local record, half = arg[1], tonumber(arg[2])
assert((record == "none" or record == "minimal" or record == "one") and (half == 0 or half == 1),
  "usage: matviews bench/recording_floor.lua none|minimal|one 0|1")

local INSERT = "INSERT INTO bench_runs (defn, status, started_at) VALUES ($1, 1, clock_timestamp()) RETURNING id"
local UPDATE = "UPDATE bench_runs SET status = 2, finished_at = clock_timestamp(), meta = $2 WHERE id = $1"
-- mode one: the run before's UPDATE ($2 its id, $3 its meta) with this run's INSERT ($1)
local BOTH = "WITH f AS (UPDATE bench_runs SET status = 2, finished_at = clock_timestamp(), meta = $3 WHERE id = $2) " .. INSERT
local rec = record ~= "none" and mv.conn():clone() or nil
local id, meta = 0, nil -- the run before, in mode one
for i, d in ipairs(mv.definitions.list()) do
  if i % 2 == half then
    if record == "one" then
      id = rec:query(BOTH, d.id, id, meta or "{}")[1].id
    elseif rec then
      id = rec:query(INSERT, d.id)[1].id
    end
    local r = mv.services.regular_refresh(d)
    assert(r.success, d.name)
    meta = mv.json.encode(r)
    if record == "minimal" then rec:exec(UPDATE, id, meta) end
  end
end
if record == "one" and meta then rec:exec(UPDATE, id, meta) end
