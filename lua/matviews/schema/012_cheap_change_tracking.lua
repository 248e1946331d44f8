-- Schema step 12: change tracking that costs writers less (matviews.changes,
-- docs/benchmarks.md). matviews_table_changes becomes UNLOGGED (its rows
-- write no WAL) with no unique key: the statement trigger is one plain
-- INSERT of (table, writer's xid8), no ON CONFLICT, no SET clause on the
-- function (every name in it is schema-qualified instead, so the caller's
-- search_path cannot reach into it); a transaction that writes a table in
-- several statements leaves several equal rows, which the check reads as
-- one. An index on xid keeps the check to the rows newer than the baseline.
--
-- Crash safety: a crash (or a promoted standby) empties an unlogged table,
-- change rows and all. A sentinel row (relid 0), seeded when tracking is
-- installed and again whenever the check finds none, is emptied with them;
-- the check skips only when a sentinel is visible in the baseline's
-- snapshot, i.e. the table has been recording without a break since then.
-- The rows kept from step 11 carry no sentinel, so after this step every
-- tracked view is refreshed once before it can be skipped again.
return {
  version = 12,
  name = "cheap_change_tracking",
  sql = [[
ALTER TABLE matviews_table_changes SET UNLOGGED;
ALTER TABLE matviews_table_changes DROP CONSTRAINT IF EXISTS matviews_table_changes_pkey;
CREATE INDEX matviews_table_changes_xid ON matviews_table_changes (xid);

DO $d$ BEGIN
  EXECUTE format($f$
CREATE OR REPLACE FUNCTION matviews_note_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $b$
BEGIN
  INSERT INTO %I.matviews_table_changes (relid, xid) VALUES (TG_RELID, pg_catalog.pg_current_xact_id());
  RETURN NULL;
END
$b$$f$, current_schema());
END $d$;
ALTER FUNCTION matviews_note_change() RESET ALL;
REVOKE ALL ON FUNCTION matviews_note_change() FROM PUBLIC;

CREATE OR REPLACE FUNCTION matviews_note_matview() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN
  INSERT INTO matviews_table_changes (relid, xid)
  SELECT DISTINCT objid, pg_current_xact_id() FROM pg_event_trigger_ddl_commands()
   WHERE classid = 'pg_class'::regclass AND objid IS NOT NULL;
END
$f$;
DO $d$ BEGIN
  EXECUTE format('ALTER FUNCTION matviews_note_matview() SET search_path = %I, pg_catalog', current_schema());
END $d$;
REVOKE ALL ON FUNCTION matviews_note_matview() FROM PUBLIC;
]],
}
