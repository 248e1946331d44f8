-- matviews_changes 1.0: the trigger function matviews' apply attaches to
-- the tables a refresh_when = "changed" view reads, when this extension is
-- installed in matviews' catalog schema (CREATE EXTENSION matviews_changes
-- SCHEMA <that schema>). It writes into the matviews_table_changes of the
-- schema it lives in.
\echo Use "CREATE EXTENSION matviews_changes" to load this file. \quit
CREATE FUNCTION matviews_note_change_c() RETURNS trigger
AS 'MODULE_PATHNAME', 'matviews_note_change_c' LANGUAGE C;
