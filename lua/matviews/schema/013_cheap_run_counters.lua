-- Schema step 13: run counters (step 8) that cost a run less. Step 8's
-- trigger called PL/pgSQL on every write of a run's status, the begin's
-- INSERT of a running row included (where it returned at once), and its
-- body upserted the counters through a set-returning SQL function and an
-- unnest/array_agg of the bucket array: about 0.3 ms of the finish of a
-- tiny view's run (docs/benchmarks.md). Here:
--   * two triggers whose WHEN clause (evaluated by the server, no function
--     call) lets only a finalisation through: an INSERT of a finished row
--     (matviews_count_run_insert), an UPDATE of status that finishes a row
--     that was not finished (matviews_count_run), whoever writes it (the
--     recorder, reconcile, a worker's reaper, a hand-written UPDATE);
--   * a body that adds one to the counters row in place (one element of
--     the bucket array), inserting it only when it is missing (ON CONFLICT
--     for a race with another finalisation of the same view);
--   * matviews_duration_bucket as one CASE expression, which the planner
--     inlines (same result as step 8's).
-- What is counted does not change: one per finalisation, in the
-- finalising transaction, never going down.
local catalog = require "matviews.catalog"
local vocab = require "matviews.vocab"
local BUCKETS = require("matviews.schema.008_run_counters").BUCKETS

-- "WHEN ms <= 100 THEN 1 WHEN ms <= 500 THEN 2 ... ELSE 10"
local cases = {}
for i, s in ipairs(BUCKETS) do cases[i] = ("WHEN ms <= %d THEN %d"):format(math.floor(s * 1000), i) end
local bucket_case = table.concat(cases, " ") .. (" ELSE %d"):format(#BUCKETS + 1)

local sql = { ([[
CREATE OR REPLACE FUNCTION matviews_duration_bucket(ms bigint) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
  SELECT CASE %s END
$f$;

CREATE OR REPLACE FUNCTION matviews_count_run() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $f$
DECLARE
  b int := CASE WHEN NEW.duration_ms IS NULL THEN NULL ELSE matviews_duration_bucket(NEW.duration_ms) END;
  st text := CASE NEW.status WHEN @S@ THEN 'success' ELSE 'failed' END;
  one bigint[];
BEGIN
  IF NEW.status NOT IN (@S@, @F@) OR (TG_OP = 'UPDATE' AND OLD.status IN (@S@, @F@)) THEN
    RETURN NULL;
  END IF;
  UPDATE matviews_run_counters
     SET runs = runs + 1, timed_runs = timed_runs + (b IS NOT NULL)::int,
         duration_ms_sum = duration_ms_sum + coalesce(NEW.duration_ms, 0),
         buckets[coalesce(b, 1)] = buckets[coalesce(b, 1)] + (b IS NOT NULL)::int,
         updated_at = now()
   WHERE mat_view_definition_id = NEW.mat_view_definition_id AND op = TG_ARGV[0] AND status = st;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  one := array_fill(0::bigint, ARRAY[%d]);
  IF b IS NOT NULL THEN one[b] := 1; END IF;
  INSERT INTO matviews_run_counters AS c
    (mat_view_definition_id, op, status, runs, timed_runs, duration_ms_sum, buckets)
  VALUES (NEW.mat_view_definition_id, TG_ARGV[0], st, 1, (b IS NOT NULL)::int, coalesce(NEW.duration_ms, 0), one)
  ON CONFLICT (mat_view_definition_id, op, status) DO UPDATE
    SET runs = c.runs + 1, timed_runs = c.timed_runs + EXCLUDED.timed_runs,
        duration_ms_sum = c.duration_ms_sum + EXCLUDED.duration_ms_sum,
        buckets[coalesce(b, 1)] = c.buckets[coalesce(b, 1)] + (b IS NOT NULL)::int,
        updated_at = now();
  RETURN NULL;
END
$f$;
DO $d$ BEGIN
  EXECUTE format('ALTER FUNCTION matviews_count_run() SET search_path = %%I, pg_catalog', current_schema());
END $d$;
REVOKE ALL ON FUNCTION matviews_count_run() FROM PUBLIC;
]]):format(bucket_case, #BUCKETS + 1) }

for _, op in ipairs(catalog.OPS) do
  local t = catalog.RUN_TABLES[op]
  sql[#sql + 1] = ([[
DROP TRIGGER matviews_count_run ON %s;
CREATE TRIGGER matviews_count_run AFTER UPDATE OF status ON %s
  FOR EACH ROW WHEN (NEW.status IN (@S@, @F@) AND OLD.status NOT IN (@S@, @F@))
  EXECUTE FUNCTION matviews_count_run('%s');
CREATE TRIGGER matviews_count_run_insert AFTER INSERT ON %s
  FOR EACH ROW WHEN (NEW.status IN (@S@, @F@))
  EXECUTE FUNCTION matviews_count_run('%s');]]):format(t, t, op, t, op)
end

local codes = { S = vocab.STATUS_CODE.success, F = vocab.STATUS_CODE.failed }
return {
  version = 13,
  name = "cheap_run_counters",
  sql = (table.concat(sql, "\n"):gsub("@(%u)@", function(k) return tostring(codes[k]) end)),
}
