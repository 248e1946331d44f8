-- Schema step 7: a definition knows its schema. Definitions were resolved
-- through each session's search_path; they now store the schema their view
-- lives in, unique together with the name, so that analytics.mv_x and
-- public.mv_x can both be defined and every process means the same view.
-- Existing rows are filled from where each view lives today: the relation
-- the upgrading session's search_path finds, else the only materialized
-- view of that name in any schema, else current_schema(). A row inserted
-- without one (by hand) gets the inserting session's current_schema().
return {
  version = 7,
  name = "definition_schema",
  sql = [[
ALTER TABLE mat_view_definitions ADD COLUMN schema_name text;
UPDATE mat_view_definitions d SET schema_name = coalesce(
  (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass(quote_ident(d.name))),
  (SELECT min(n.nspname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = d.name AND c.relkind = 'm'
   HAVING count(*) = 1),
  current_schema(), 'public');
ALTER TABLE mat_view_definitions ALTER COLUMN schema_name SET NOT NULL,
  ALTER COLUMN schema_name SET DEFAULT coalesce(current_schema(), 'public');
ALTER TABLE mat_view_definitions DROP CONSTRAINT mat_view_definitions_name_key;
ALTER TABLE mat_view_definitions ADD CONSTRAINT mat_view_definitions_schema_name_name_key
  UNIQUE (schema_name, name);
]],
}
