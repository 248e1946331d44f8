-- Schema step 4: the record of scripted migrations (lua/matviews/migrate.lua).
-- One row per applied migration file migrations/NNN_name.lua: its version
-- (NNN), name, the sha256 of the file as applied (hex), and when.
return {
  version = 4,
  name = "migrations",
  sql = [[
CREATE TABLE matviews_migrations (
  version    bigint PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON matviews_migrations FROM PUBLIC;
]],
}
