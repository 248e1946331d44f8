-- Schema step 11: change tracking for `refresh --if-changed` and
-- refresh_when = "changed" (matviews.changes). matviews_table_changes holds
-- one row per tracked relation and writing transaction (its xid8), written
-- by a statement-level trigger in the writer's own transaction: a writer
-- that rolls back leaves nothing, one in flight is invisible until it
-- commits. matviews_tracked_relations says since which transaction each
-- relation is tracked (relid 0: REFRESH/CREATE/ALTER of materialized views,
-- by an event trigger, when the installing role may create one).
return {
  version = 11,
  name = "change_tracking",
  sql = [[
CREATE TABLE matviews_table_changes (
  relid oid NOT NULL,
  xid   xid8 NOT NULL,
  PRIMARY KEY (relid, xid)
);
CREATE TABLE matviews_tracked_relations (
  relid         oid PRIMARY KEY,
  tracked_since xid8 NOT NULL,
  installed_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON matviews_table_changes, matviews_tracked_relations FROM PUBLIC;

-- The statement trigger on a tracked table: the table and this transaction,
-- once (a second statement of the transaction finds its row).
CREATE FUNCTION matviews_note_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN
  INSERT INTO matviews_table_changes (relid, xid) VALUES (TG_RELID, pg_current_xact_id())
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$f$;
DO $d$ BEGIN
  EXECUTE format('ALTER FUNCTION matviews_note_change() SET search_path = %I, pg_catalog', current_schema());
END $d$;
REVOKE ALL ON FUNCTION matviews_note_change() FROM PUBLIC;

-- The event trigger's function (the trigger itself needs a superuser; apply
-- creates it when it can): REFRESH, CREATE and ALTER of a materialized view
-- count as a change of it, in their own transaction.
CREATE FUNCTION matviews_note_matview() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER AS $f$
BEGIN
  INSERT INTO matviews_table_changes (relid, xid)
  SELECT DISTINCT objid, pg_current_xact_id() FROM pg_event_trigger_ddl_commands()
   WHERE classid = 'pg_class'::regclass AND objid IS NOT NULL
  ON CONFLICT DO NOTHING;
END
$f$;
DO $d$ BEGIN
  EXECUTE format('ALTER FUNCTION matviews_note_matview() SET search_path = %I, pg_catalog', current_schema());
END $d$;
REVOKE ALL ON FUNCTION matviews_note_matview() FROM PUBLIC;
]],
}
