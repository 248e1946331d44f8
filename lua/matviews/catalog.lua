-- The catalog: installs and upgrades matviews's tables in place. Each schema
-- step is a module lua/matviews/schema/NNN_name.lua returning
-- { version = N, name = ..., sql = ... }; matviews_schema_versions records the
-- steps applied, so `init` applies only what is missing and twice is a no-op.
local M = {}

-- The run tables' vocabulary (defined once, in matviews.vocab): the three
-- operations, the run table of each, and the status codes of the seed.
local vocab = require "matviews.vocab"
M.OPS, M.RUN_TABLES = vocab.OPS, vocab.RUN_TABLES
M.STATUS, M.STATUS_CODE = vocab.STATUS, vocab.STATUS_CODE

-- Every step, in order. A new step is a new file and a new line here.
M.steps = {
  "001_catalog",
  "002_jobs",
  "003_schedule",
  "004_migrations",
  "006_report_indexes",
  "007_definition_schema",
  "008_run_counters",
  "010_definition_versions",
  "011_change_tracking",
  "012_cheap_change_tracking",
  "013_cheap_run_counters",
  "014_definition_name_index",
  "015_counter_domains",
}

local LOCK_KEY = 7318029311 -- advisory lock: one init at a time per database

-- The catalog's tables and sequences (in the current schema), with their kind.
local RELATIONS = [[SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
  FROM pg_class c
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'S')
   AND (c.relname LIKE 'mat\_view\_%' OR c.relname LIKE 'matviews\_%') ORDER BY 1]]

-- Applies the missing steps in one transaction on conn (default connection).
-- Returns { applied = { "001_catalog", ... }, version = N }.
function M.init(conn)
  local mv = require "matviews"
  conn = conn or mv.conn()
  return mv.transaction(function(c)
    c:exec("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
    c:exec([[CREATE TABLE IF NOT EXISTS matviews_schema_versions (
               version integer PRIMARY KEY, name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())]])
    c:exec("REVOKE ALL ON matviews_schema_versions FROM PUBLIC")
    local have = {}
    for _, r in ipairs(c:query("SELECT version FROM matviews_schema_versions")) do have[r.version] = true end
    local applied, version = {}, 0
    for _, modname in ipairs(M.steps) do
      local step = require("matviews.schema." .. modname)
      if not have[step.version] then
        c:script(step.sql)
        c:exec("INSERT INTO matviews_schema_versions (version, name) VALUES ($1, $2)", step.version, step.name)
        applied[#applied + 1] = modname
      end
      if step.version > version then version = step.version end
    end
    if #applied > 0 then -- what default privileges gave PUBLIC on new relations is taken back
      for _, r in ipairs(c:query(RELATIONS)) do
        c:exec(("REVOKE ALL ON %s %s FROM PUBLIC"):format(r.kind, c:quote_ident(r.relname)))
      end
    end
    return { applied = applied, version = version }
  end, conn)
end

-- Grants read-only access to every catalog table (for dashboards) to role.
-- Returns the names of the tables granted.
function M.grant_read(role, conn)
  local mv = require "matviews"
  conn = conn or mv.conn()
  local ok, msg = true, nil
  if type(role) ~= "string" or role == "" or #role > 63 or role:find("%z") then
    ok, msg = false, "invalid role name"
  end
  if not ok then mv.error({ message = "--grant-read: " .. msg }) end
  if #conn:query("SELECT 1 FROM pg_roles WHERE rolname = $1", role) == 0 then
    mv.error({ message = ("--grant-read: role %q does not exist"):format(role) })
  end
  local tables = {}
  for _, r in ipairs(conn:query(RELATIONS)) do
    if r.kind == "TABLE" then
      conn:exec(("GRANT SELECT ON %s TO %s"):format(conn:quote_ident(r.relname), conn:quote_ident(role)))
      tables[#tables + 1] = r.relname
    end
  end
  return tables
end

-- The installed version (0 when the catalog is not installed).
function M.version(conn)
  local mv = require "matviews"
  conn = conn or mv.conn()
  local r = conn:query("SELECT to_regclass('matviews_schema_versions') IS NOT NULL AS ok")[1]
  if not r.ok then return 0 end
  return conn:query("SELECT coalesce(max(version), 0) AS v FROM matviews_schema_versions")[1].v
end

return M
