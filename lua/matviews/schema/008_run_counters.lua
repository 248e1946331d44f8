-- Schema step 8: cumulative run counters for `matviews metrics`.
-- matviews_run_counters holds, per definition, operation and final status,
-- how many runs finished and a histogram of their durations. A trigger on
-- each run table adds a run when it is finalised (status becomes success or
-- failed, by UPDATE or by an INSERT of a finished row), in the finalising
-- transaction: the counters move exactly when the run row does, and never
-- go down, whatever `prune` deletes later. Existing runs are counted once
-- when the step is applied.
local catalog = require "matviews.catalog"

-- Upper bounds (seconds) of the duration histogram's buckets; +Inf is last.
local BUCKETS = { 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600 }

local sql = { ([[
CREATE TABLE matviews_run_counters (
  mat_view_definition_id bigint NOT NULL REFERENCES mat_view_definitions (id) ON DELETE CASCADE,
  op                     text NOT NULL CHECK (op IN ('create', 'refresh', 'delete')),
  status                 text NOT NULL CHECK (status IN ('success', 'failed')),
  runs                   bigint NOT NULL DEFAULT 0,
  timed_runs             bigint NOT NULL DEFAULT 0,
  duration_ms_sum        bigint NOT NULL DEFAULT 0,
  buckets                bigint[] NOT NULL,
  updated_at             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (mat_view_definition_id, op, status)
);
REVOKE ALL ON matviews_run_counters FROM PUBLIC;

-- The bucket (1-based) of a duration: the first bound it does not exceed.
CREATE FUNCTION matviews_duration_bucket(ms bigint) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
  SELECT coalesce((SELECT min(i)::int FROM unnest('{%s}'::float8[]) WITH ORDINALITY b(s, i)
                   WHERE ms <= s * 1000), %d)
$f$;

-- Adds one finished run (op: TG_ARGV[0]) to the counters. SECURITY DEFINER:
-- a role that may write run rows need not be granted the counters; its
-- search_path is pinned to the catalog's schema below.
CREATE FUNCTION matviews_count_run() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $f$
DECLARE
  b int;
  empty bigint[] := array_fill(0::bigint, ARRAY[%d]);
BEGIN
  IF NEW.status NOT IN (2, 3) OR (TG_OP = 'UPDATE' AND OLD.status IN (2, 3)) THEN
    RETURN NULL;
  END IF;
  b := CASE WHEN NEW.duration_ms IS NULL THEN NULL ELSE matviews_duration_bucket(NEW.duration_ms) END;
  INSERT INTO matviews_run_counters AS c
    (mat_view_definition_id, op, status, runs, timed_runs, duration_ms_sum, buckets)
  VALUES (NEW.mat_view_definition_id, TG_ARGV[0], CASE NEW.status WHEN 2 THEN 'success' ELSE 'failed' END,
          1, (b IS NOT NULL)::int, coalesce(NEW.duration_ms, 0),
          CASE WHEN b IS NULL THEN empty ELSE empty[1:b-1] || 1::bigint || empty[b+1:] END)
  ON CONFLICT (mat_view_definition_id, op, status) DO UPDATE
    SET runs = c.runs + 1, timed_runs = c.timed_runs + EXCLUDED.timed_runs,
        duration_ms_sum = c.duration_ms_sum + EXCLUDED.duration_ms_sum,
        buckets = (SELECT array_agg(x + y ORDER BY i) FROM unnest(c.buckets, EXCLUDED.buckets) WITH ORDINALITY u(x, y, i)),
        updated_at = now();
  RETURN NULL;
END
$f$;
DO $d$ BEGIN
  EXECUTE format('ALTER FUNCTION matviews_count_run() SET search_path = %%I, pg_catalog', current_schema());
END $d$;
REVOKE ALL ON FUNCTION matviews_count_run() FROM PUBLIC;
]]):format(table.concat(BUCKETS, ","), #BUCKETS + 1, #BUCKETS + 1) }

for _, op in ipairs(catalog.OPS) do
  local t = catalog.RUN_TABLES[op]
  sql[#sql + 1] = ([[
CREATE TRIGGER matviews_count_run AFTER INSERT OR UPDATE OF status ON %s
  FOR EACH ROW EXECUTE FUNCTION matviews_count_run('%s');
WITH per AS (
  SELECT mat_view_definition_id AS id, status,
         CASE WHEN duration_ms IS NULL THEN 0 ELSE matviews_duration_bucket(duration_ms) END AS b,
         count(*) AS n, coalesce(sum(duration_ms), 0) AS ms
    FROM %s WHERE status IN (2, 3) GROUP BY 1, 2, 3)
INSERT INTO matviews_run_counters (mat_view_definition_id, op, status, runs, timed_runs, duration_ms_sum, buckets)
SELECT p.id, '%s', CASE p.status WHEN 2 THEN 'success' ELSE 'failed' END, sum(p.n),
       coalesce(sum(p.n) FILTER (WHERE p.b > 0), 0), sum(p.ms),
       ARRAY(SELECT coalesce(sum(q.n), 0)::bigint FROM generate_series(1, %d) i
               LEFT JOIN per q ON q.id = p.id AND q.status = p.status AND q.b = i GROUP BY i ORDER BY i)
  FROM per p GROUP BY p.id, p.status;]]):format(t, op, t, op, #BUCKETS + 1)
end

return {
  version = 8,
  name = "run_counters",
  BUCKETS = BUCKETS,
  sql = table.concat(sql, "\n"),
}
