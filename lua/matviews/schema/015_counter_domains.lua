-- Schema step 15: the run counters' op and status checked by domains
-- instead of CHECK constraints. Each finalisation updates a counters row
-- (matviews_count_run, steps 8 and 13), and PostgreSQL evaluates a table's
-- CHECK constraints on every UPDATE, whatever columns it sets, reading
-- their expressions back from the catalog text for each statement: 3 % of
-- the server's instructions for a run's begin and finish
-- (bench/recorder_cpu.sh). A domain's check runs only when a value is
-- stored in the column, which the counters' in-place UPDATE never does. The
-- same values are allowed; readers see text as before (a domain's values
-- are sent as its base type).
local vocab = require "matviews.vocab"

local function list(names)
  local t = {}
  for i, n in ipairs(names) do t[i] = "'" .. n .. "'" end
  return table.concat(t, ", ")
end

return {
  version = 15,
  name = "counter_domains",
  sql = ([[
CREATE DOMAIN matviews_run_op AS text CHECK (VALUE IN (%s));
CREATE DOMAIN matviews_run_outcome AS text CHECK (VALUE IN ('success', 'failed'));
REVOKE ALL ON DOMAIN matviews_run_op, matviews_run_outcome FROM PUBLIC;
ALTER TABLE matviews_run_counters
  DROP CONSTRAINT IF EXISTS matviews_run_counters_op_check,
  DROP CONSTRAINT IF EXISTS matviews_run_counters_status_check,
  ALTER COLUMN op TYPE matviews_run_op, ALTER COLUMN status TYPE matviews_run_outcome;
]]):format(list(vocab.OPS)),
}
