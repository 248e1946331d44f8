-- Skip-unchanged refresh (refresh --if-changed, refresh_when = "changed"):
-- a refresh is skipped, recorded with meta.skipped = "unchanged", only when
-- no committed transaction changed any relation the view reads (directly,
-- or through plain views and materialized views) since the snapshot of the
-- run that last filled it. Exact by transactions, not clocks or counters:
--   * apply installs a statement-level trigger on each base table a tracked
--     view reads; it records (table, writer's xid8) in the writer's own
--     transaction (matviews_table_changes): a rollback leaves nothing, a
--     writer in flight is invisible until it commits;
--   * REFRESH/CREATE/ALTER of a materialized view is recorded the same way
--     by an event trigger (when apply may create one, i.e. as a superuser);
--   * a refresh or create of a view that asks (refresh_when = "changed",
--     --if-changed) records in meta.snapshot the snapshot taken on its
--     connection before the service starts (pg_current_snapshot(): what the
--     refresh may have missed counts as not seen); a view without one is
--     refreshed, so --if-changed skips from its second use on;
--   * the check takes one statement's snapshot C and looks for a change row
--     of a source whose xid is not visible in the baseline snapshot B
--     (pg_visible_in_snapshot). None: skipped, and C is the new baseline;
--     a writer in flight at C is not visible in C, so it is seen later.
-- A source whose tracking is missing (no trigger, tracking installed after
-- B, a foreign table, a user function in the query, no event trigger for a
-- materialized view source) is never skipped.
-- The change table is UNLOGGED (schema step 12: writers pay no WAL for
-- it), so a crash or a failover empties it. A sentinel row (relid 0) goes
-- with it: the check skips only when a sentinel is visible in B (the table
-- has recorded without a break since B), and seeds a new one when there is
-- none, whose xid no earlier baseline sees. A baseline from a later xid
-- than the server's (a restored or reset cluster) is never trusted either.
local M = {}

local function mv() return require "matviews" end
local vocab = require "matviews.vocab"
local error_message = require("matviews.core").error_message -- the text of a caught error

M.TRIGGER = "matviews_track_changes"
M.EVENT_TRIGGER = "matviews_track_matviews"
M.MATVIEWS_RELID = 0 -- matviews_tracked_relations row of the event trigger
M.SENTINEL_RELID = 0 -- matviews_table_changes row: the table has recorded since its xid

-- The relations a view reads, transitively through plain views and
-- materialized views, and the children of each table it reads (partitions
-- at every level, tables that INHERIT it: a query of a parent reads them,
-- and a statement fires the statement triggers of the table it names only):
-- rows { relid, relkind, name }; plus user functions its query (or a view
-- it reads) calls. One query.
local SOURCES = [[
WITH RECURSIVE deps(relid, kind, depth) AS (
  SELECT c.oid, c.relkind, 0 FROM pg_class c
   WHERE c.oid = to_regclass(quote_ident($1) || '.' || quote_ident($2))
  UNION
  SELECT d.refobjid, c2.relkind, deps.depth + 1
    FROM deps
    JOIN pg_rewrite rw ON rw.ev_class = deps.relid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> deps.relid
    JOIN pg_class c2 ON c2.oid = d.refobjid
   WHERE deps.kind IN ('v', 'm') AND deps.depth < 64
), tree(relid) AS (
  SELECT relid FROM deps WHERE kind IN ('r', 'p') AND depth > 0
  UNION
  SELECT i.inhrelid FROM tree JOIN pg_inherits i ON i.inhparent = tree.relid
), rels(relid, kind, depth) AS (
  SELECT relid, kind, depth FROM deps
  UNION SELECT t.relid, c.relkind, 1 FROM tree t JOIN pg_class c ON c.oid = t.relid
)
SELECT DISTINCT x.relid::bigint AS relid, x.kind::text AS relkind,
       format('%I.%I', n.nspname, c.relname) AS name, x.depth = 0 AS self,
       (SELECT count(*) FROM deps v JOIN pg_rewrite rw ON rw.ev_class = v.relid
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                          AND d.refclassid = 'pg_proc'::regclass AND d.refobjid >= 16384
         WHERE v.kind IN ('v', 'm'))::int AS user_functions
  FROM rels x JOIN pg_class c ON c.oid = x.relid JOIN pg_namespace n ON n.oid = c.relnamespace]]

-- The sources of the view schema.name: { tables = { {relid, name} },
-- matviews = { ... }, untracked = { "why", ... }, exists = bool }.
-- Children of a table count as tables of their own.
function M.sources(conn, schema, name)
  local out = { tables = {}, matviews = {}, untracked = {}, exists = false }
  local seen = {}
  local function add(list, relid, rel) -- once each: a parent and its child may both be read
    if not seen[relid] then seen[relid] = true; list[#list + 1] = { relid = relid, name = rel } end
  end
  local rows = conn:query(SOURCES, schema, name)
  for _, r in ipairs(rows) do
    if r.self then
      out.exists = true
      if r.user_functions > 0 then out.untracked[#out.untracked + 1] = "its query calls user functions" end
    elseif r.relkind == "r" or r.relkind == "p" then
      add(out.tables, r.relid, r.name)
    elseif r.relkind == "m" then
      add(out.matviews, r.relid, r.name)
    elseif r.relkind ~= "v" then
      out.untracked[#out.untracked + 1] = r.name .. " (relkind " .. r.relkind .. ")"
    end
  end
  return out
end

-- The snapshot of a statement on conn, as text (nil if it cannot be read).
function M.snapshot(conn)
  local ok, rows = pcall(conn.query, conn, "SELECT pg_current_snapshot()::text AS s")
  return ok and rows[1] and rows[1].s or nil
end

-- Seeds a sentinel on c unless one is visible to its statement already;
-- returns true when it inserted one.
local SEED = [[INSERT INTO matviews_table_changes (relid, xid)
  SELECT $1::oid, pg_current_xact_id() WHERE NOT EXISTS (SELECT 1 FROM matviews_table_changes
    WHERE relid = $1::oid AND pg_visible_in_snapshot(xid, pg_current_snapshot()))]]
function M.seed(c)
  return c:exec(SEED, M.SENTINEL_RELID) > 0
end

-- Runs fn(c) in a savepoint of the transaction on c; returns ok, error.
local function guarded(c, fn)
  c:exec("SAVEPOINT matviews_track")
  local ok, err = pcall(fn, c)
  if ok then c:exec("RELEASE SAVEPOINT matviews_track")
  else c:exec("ROLLBACK TO SAVEPOINT matviews_track"); c:exec("RELEASE SAVEPOINT matviews_track") end
  return ok, err
end

-- Installs tracking on c (inside apply's transaction) for views, an array
-- of { schema, name } (those that say refresh_when = "changed"): the
-- statement trigger on each base table they read, and the event trigger
-- when one reads a materialized view. Returns { installed = { names },
-- warnings = { text } }.
function M.install(c, views)
  local out = { installed = {}, warnings = {} }
  local fn = c:query("SELECT quote_ident(current_schema()) AS s")[1].s
  local done, want_event = {}, false
  for _, def in ipairs(views) do
    do
      local src = M.sources(c, def.schema, def.name)
      for _, t in ipairs(src.tables) do
        if not done[t.relid] then
          done[t.relid] = true
          local have = c:query("SELECT tgenabled::text AS e FROM pg_trigger WHERE tgrelid = $1::oid AND tgname = $2",
            t.relid, M.TRIGGER)[1]
          if not have or have.e ~= "A" then
            -- ENABLE ALWAYS: it fires under session_replication_role =
            -- replica too (a logical replication subscriber's apply worker,
            -- pg_restore --disable-triggers); tracking (re)starts now
            local ok, err = guarded(c, function(g)
              if not have then
                g:exec(("CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s.matviews_note_change()")
                  :format(M.TRIGGER, t.name, fn))
              end
              g:exec(("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s"):format(t.name, M.TRIGGER))
              g:exec([[INSERT INTO matviews_tracked_relations (relid, tracked_since) VALUES ($1::oid, pg_current_xact_id())
                ON CONFLICT (relid) DO UPDATE SET tracked_since = EXCLUDED.tracked_since, installed_at = now()]], t.relid)
            end)
            if ok then out.installed[#out.installed + 1] = t.name
            else out.warnings[#out.warnings + 1] = ("%s: cannot track changes of %s (%s): it is always refreshed")
              :format(def.name, t.name, error_message(err)) end
          elseif #c:query("SELECT 1 FROM matviews_tracked_relations WHERE relid = $1::oid", t.relid) == 0 then
            c:exec("INSERT INTO matviews_tracked_relations (relid, tracked_since) VALUES ($1::oid, pg_current_xact_id())", t.relid)
          end
        end
      end
      if #src.matviews > 0 then want_event = true end
    end
  end
  if #out.installed > 0 or want_event then M.seed(c) end
  local evt = want_event and c:query("SELECT evtenabled::text AS e FROM pg_event_trigger WHERE evtname = $1", M.EVENT_TRIGGER)[1]
  if want_event and (not evt or evt.e ~= "A") then
    local ok, err = guarded(c, function(g)
      if not evt then
        g:exec(("CREATE EVENT TRIGGER %s ON ddl_command_end WHEN TAG IN ('REFRESH MATERIALIZED VIEW', 'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW') EXECUTE FUNCTION %s.matviews_note_matview()")
          :format(M.EVENT_TRIGGER, fn))
      end
      g:exec(("ALTER EVENT TRIGGER %s ENABLE ALWAYS"):format(M.EVENT_TRIGGER))
      g:exec([[INSERT INTO matviews_tracked_relations (relid, tracked_since) VALUES ($1::oid, pg_current_xact_id())
        ON CONFLICT (relid) DO UPDATE SET tracked_since = EXCLUDED.tracked_since, installed_at = now()]], M.MATVIEWS_RELID)
    end)
    if ok then out.installed[#out.installed + 1] = "(event trigger) " .. M.EVENT_TRIGGER
    else out.warnings[#out.warnings + 1] = ("cannot track refreshes of materialized views (%s): views reading one are always refreshed")
      :format(error_message(err)) end
  end
  return out
end

-- The baseline of definition id: the snapshot of the latest successful run
-- that filled the view (a refresh, one skipped as unchanged, or a create
-- that populated it), or nil.
function M.baseline(conn, id)
  local rows = conn:query(vocab.sql[[SELECT snap FROM (
      (SELECT meta->>'snapshot' AS snap, created_at, id FROM {refresh_runs}
        WHERE mat_view_definition_id = $1 AND status = {success} AND coalesce(meta->>'skipped', 'unchanged') = 'unchanged'
        ORDER BY created_at DESC, id DESC LIMIT 1)
      UNION ALL
      (SELECT meta->>'snapshot', created_at, id FROM {create_runs}
        WHERE mat_view_definition_id = $1 AND status = {success}
          AND coalesce(meta->>'no_data', meta->'request'->>'no_data', 'false') <> 'true'
        ORDER BY created_at DESC, id DESC LIMIT 1)) x
    ORDER BY created_at DESC, id DESC LIMIT 1]], id)
  local s = rows[1] and rows[1].snap
  if s == nil or s == mv().null then return nil end
  return s
end

-- Whether a refresh of defn may be skipped. Returns the meta of the skipped
-- run ({ skipped = "unchanged", snapshot = C, sources = n }) when nothing
-- changed, else nil and why it must run.
function M.check(conn, defn)
  local base = M.baseline(conn, defn.id)
  if not base then return nil, "no earlier refresh recorded a snapshot" end
  local src = M.sources(conn, defn.schema_name or "public", defn.name)
  if not src.exists then return nil, "the view does not exist" end
  if #src.untracked > 0 then return nil, "not tracked: " .. table.concat(src.untracked, ", ") end
  local ids, tracked = {}, {}
  for _, t in ipairs(src.tables) do ids[#ids + 1] = t.relid; tracked[#tracked + 1] = t.relid end
  for _, m in ipairs(src.matviews) do ids[#ids + 1] = m.relid end
  if #src.matviews > 0 then tracked[#tracked + 1] = M.MATVIEWS_RELID end
  local list = function(t) return "{" .. table.concat(t, ",") .. "}" end
  -- xid >= xmin(B) is implied by "not visible in B"; it lets the xid index
  -- read only the rows newer than the baseline
  local r = conn:query([[SELECT pg_current_snapshot()::text AS snap,
      pg_snapshot_xmax($1::pg_snapshot) <= pg_snapshot_xmax(pg_current_snapshot()) AS sane,
      EXISTS (SELECT 1 FROM matviews_table_changes s WHERE s.relid = $4::oid
          AND pg_visible_in_snapshot(s.xid, $1::pg_snapshot)) AS recorded,
      (SELECT count(*) FROM matviews_tracked_relations t WHERE t.relid = ANY ($3::oid[])
          AND pg_visible_in_snapshot(t.tracked_since, $1::pg_snapshot)
          AND CASE WHEN t.relid = $7::oid
                THEN EXISTS (SELECT 1 FROM pg_event_trigger e WHERE e.evtname = $6 AND e.evtenabled = 'A')
                ELSE EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = $5 AND g.tgenabled = 'A')
              END)::int AS tracked,
      EXISTS (SELECT 1 FROM matviews_table_changes c WHERE c.relid = ANY ($2::oid[])
          AND c.xid >= pg_snapshot_xmin($1::pg_snapshot)
          AND NOT pg_visible_in_snapshot(c.xid, $1::pg_snapshot)) AS changed]],
    base, list(ids), list(tracked), M.SENTINEL_RELID, M.TRIGGER, M.EVENT_TRIGGER, M.MATVIEWS_RELID)[1]
  if not r.sane then return nil, "the last refresh's snapshot is newer than the server (a restored or reset cluster)" end
  if not r.recorded then
    M.seed(conn)
    return nil, "change tracking restarted since the last refresh (a crash or failover empties the change table)"
  end
  if r.tracked < #tracked then
    return nil, "a source's tracking began after the last refresh, or its trigger is gone or not ENABLE ALWAYS (run apply)"
  end
  if r.changed then return nil, "a source changed" end
  return { view = defn.name, skipped = "unchanged", snapshot = r.snap, sources = #ids }
end

-- Deletes the change rows that every baseline already sees: xids below the
-- smallest xmin of the latest baseline of each definition that has one
-- (without any, below the current xmin). Returns how many it deleted.
function M.prune(conn)
  conn = conn or mv().conn()
  local low
  for _, d in ipairs(conn:query("SELECT id FROM mat_view_definitions")) do
    local b = M.baseline(conn, d.id)
    if b then
      local x = conn:query("SELECT pg_snapshot_xmin($1::pg_snapshot)::text AS x", b)[1].x
      if low == nil or tonumber(x) < tonumber(low) then low = x end
    end
  end
  low = low or conn:query("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x")[1].x
  return conn:exec("DELETE FROM matviews_table_changes WHERE xid < $1::xid8 AND relid <> $2::oid", low, M.SENTINEL_RELID)
end

-- Whether the definition's options say refresh_when = "changed".
function M.tracked(dopts)
  return type(dopts) == "table" and dopts.refresh_when == "changed"
end

-- Whether a job asks to skip an unchanged view: opts.if_changed, else the
-- definition's refresh_when = "changed".
function M.wanted(opts, dopts)
  if opts.if_changed ~= nil then return opts.if_changed and true or false end
  return M.tracked(dopts)
end

return M
