-- The rehearsal behind `plan` and `apply`: every definition file is tried
-- against the live database inside one transaction that is rolled back, so
-- nothing is changed and nothing is blocked (every lock taken is
-- ACCESS SHARE, on what the SQL reads, or on relations the rehearsal made).
--
-- In the transaction: the file definitions are saved into the catalog;
-- each missing view is created WITH NO DATA under its own name, in passes,
-- so that a view is created once what it reads exists: the order comes from
-- the definitions themselves and is right on an empty database; a view
-- whose SQL changed is built beside the live one (a candidate WITH NO DATA)
-- to compare the SQL as the server normalises it and the columns; a
-- changed view's dependents are checked for columns the new SQL drops or
-- retypes; declared indexes are built (on the new view, the candidate, or
-- an empty copy of a live view) to check them and to read their normal
-- form (pg_get_indexdef); declared audits are checked on the view's new
-- columns (matviews.audit.validate); then the dependency graph is read from pg_depend
-- plus each definition's depends_on. What cannot be done is an error
-- naming the file and line.
local dsl = require "matviews.dsl"

local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

local ROLLBACK = {} -- the sentinel error that ends the transaction

-- The live relation schema.name: { oid, kind, def (pg_get_viewdef) } or nil.
local function live_rel(c, schema, name)
  return c:query([[SELECT c.oid::bigint AS oid, c.relkind::text AS kind,
      CASE WHEN c.relkind IN ('m', 'v') THEN pg_get_viewdef(c.oid) END AS def
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2]],
    schema, name)[1]
end

-- Columns of relation oid: array of { name, type } in order.
local function columns(c, oid)
  return c:query([[SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
    WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum]], oid)
end

-- Runs fn(c) in a savepoint; returns true, or false and the error message.
local function attempt(c, fn)
  c:exec("SAVEPOINT matviews_rehearsal")
  local ok, err = pcall(fn, c)
  if ok then c:exec("RELEASE SAVEPOINT matviews_rehearsal"); return true end
  c:exec("ROLLBACK TO SAVEPOINT matviews_rehearsal")
  c:exec("RELEASE SAVEPOINT matviews_rehearsal")
  return false, error_message(err)
end

-- The candidate name of a view whose SQL changed (in its schema).
local function candidate_name(e) return ("mv_rehearsal_%d"):format(e.n) end

-- Adds an error about entry e (its file and line: the line of `key` when
-- given, else at when given, else the view's).
local function fail(rep, e, key, msg, at)
  local line = at or e.def.line
  if key and e.text then line = require("matviews.config").locate(e.text, key, e.def.line) end
  rep.errors[#rep.errors + 1] = ("%s:%d: view '%s': %s"):format(e.def.file, line, e.shown, msg)
  e.invalid = true
end

-- Tries to make entry e exist in the transaction: creates a missing view,
-- builds a candidate for a live one. Returns true, or false and the error.
local function try_entry(c, e)
  local q = c:quote_ident(e.fc.schema_name) .. "." .. c:quote_ident(e.def.name)
  local sql = e.fc.sql
  if not e.live then
    return attempt(c, function() c:exec("CREATE MATERIALIZED VIEW " .. q .. " AS " .. sql .. " WITH NO DATA") end)
  end
  local cq = c:quote_ident(e.fc.schema_name) .. "." .. c:quote_ident(candidate_name(e))
  return attempt(c, function()
    c:exec("CREATE MATERIALIZED VIEW " .. cq .. " AS " .. sql .. " WITH NO DATA")
    local r = live_rel(c, e.fc.schema_name, candidate_name(e))
    e.sql_changed = r.def ~= e.live.def
    if e.sql_changed then e.candidate = { oid = r.oid, q = cq }
    else c:exec("DROP MATERIALIZED VIEW " .. cq) end -- the live view stands for itself
  end)
end

-- Creates the views in passes until no more can be; each waits for the
-- views it declares it depends on. Errors for what is left.
local function create_in_passes(c, rep, entries)
  local pending, last_err = {}, {}
  for _, e in ipairs(entries) do if not e.invalid then pending[#pending + 1] = e end end
  local by_key = rep.by_key
  repeat
    local progress, left = false, {}
    for _, e in ipairs(pending) do
      local waiting = false
      for _, dep in ipairs(e.fc.dependencies) do
        local k = dep:find(".", 1, true) and dep or (e.fc.schema_name .. "." .. dep)
        if by_key[k] and not by_key[k].ready and by_key[k] ~= e then waiting = true end
      end
      local ok, err = false, nil
      if not waiting then ok, err = try_entry(c, e) end
      if ok then e.ready, progress = true, true; rep.created_order[#rep.created_order + 1] = e.key
      else left[#left + 1] = e; last_err[e] = err or last_err[e] end
    end
    pending = left
  until not progress or #pending == 0
  for _, e in ipairs(pending) do
    fail(rep, e, "sql", last_err[e] and ("SQL does not plan: " .. last_err[e])
      or "waits for a dependency that cannot be created (depends_on)")
  end
end

-- The direct dependents of live view oid and the columns each reads:
-- { { dependent = "schema.rel", kind, column, type } }.
local function dependents_columns(c, oid)
  return c:query([[SELECT DISTINCT format('%I.%I', dn.nspname, dc.relname) AS dependent, dc.relkind::text AS kind,
      a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
    FROM pg_depend d
    JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
    JOIN pg_class dc ON dc.oid = r.ev_class JOIN pg_namespace dn ON dn.oid = dc.relnamespace
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1::oid AND d.refobjsubid > 0
      AND r.ev_class <> $1::oid AND dc.relname NOT LIKE 'mv\_rehearsal\_%'
    ORDER BY 1, 3]], oid)
end

-- For a view whose SQL changed: the column changes and the refusal when a
-- dependent reads a column the new SQL drops or retypes.
local function check_changed(c, rep, e)
  local old, new = {}, {}
  for _, col in ipairs(columns(c, e.live.oid)) do old[col.name] = col.type end
  e.new_columns = columns(c, e.candidate.oid)
  for _, col in ipairs(e.new_columns) do new[col.name] = col.type end
  e.added, e.removed, e.retyped = {}, {}, {}
  for _, col in ipairs(e.new_columns) do
    if not old[col.name] then e.added[#e.added + 1] = col.name
    elseif old[col.name] ~= col.type then e.retyped[#e.retyped + 1] = col.name end
  end
  for _, col in ipairs(columns(c, e.live.oid)) do
    if not new[col.name] then e.removed[#e.removed + 1] = col.name end
  end
  for _, d in ipairs(dependents_columns(c, e.live.oid)) do
    if not new[d.column] then
      fail(rep, e, "sql", ("cannot replace: dependent %s reads column %s, which the new SQL drops")
        :format(d.dependent, d.column))
    elseif new[d.column] ~= d.type then
      fail(rep, e, "sql", ("cannot replace: dependent %s reads column %s, whose type the new SQL changes from %s to %s")
        :format(d.dependent, d.column, d.type, new[d.column]))
    end
  end
end

-- The normal form of an index definition: UNIQUE or not, and what follows
-- " USING " in pg_get_indexdef (method, keys, INCLUDE, WHERE), which names
-- neither the index nor the relation.
function M.index_form(indexdef)
  local unique = indexdef:match("^CREATE UNIQUE INDEX ") ~= nil
  local tail = indexdef:match(" USING (.*)$") or indexdef
  return (unique and "UNIQUE " or "") .. tail
end

-- Builds the declared indexes of e on the relation that has its new columns
-- (the created view, the candidate, or an empty copy of the live view) to
-- check them and read their normal forms into e.index_forms[i].
local function check_indexes(c, rep, e)
  local declared = require("matviews.plan").declared_indexes(e.fc)
  if #declared == 0 then e.index_forms = {} return end
  local target
  if not e.live then target = c:quote_ident(e.fc.schema_name) .. "." .. c:quote_ident(e.def.name)
  elseif e.sql_changed then target = e.candidate.q
  else
    target = "pg_temp.mv_rehearsal_copy_" .. e.n
    c:exec(("CREATE TEMPORARY TABLE %s (LIKE %s.%s)"):format(target, c:quote_ident(e.fc.schema_name),
      c:quote_ident(e.def.name)))
  end
  e.index_forms = {}
  for i, ix in ipairs(declared) do
    local tmp = ("mv_rehearsal_ix_%d_%d"):format(e.n, i)
    local ok, err = attempt(c, function()
      c:exec(require("matviews.indexes").create_sql(c, ix, target, tmp))
    end)
    if not ok then
      fail(rep, e, ix.unique_key and "unique" or "indexes", ("index %s: %s"):format(ix.name, err))
    else
      local def = c:query([[SELECT pg_get_indexdef(i.oid) AS d FROM pg_class i
        WHERE i.relname = $1 AND i.relkind = 'i' ORDER BY i.oid DESC LIMIT 1]], tmp)[1]
      e.index_forms[i] = def and M.index_form(def.d)
    end
  end
end

-- Checks the audit e declares (matviews.audit.validate) on the relation
-- that has its new columns: the created view, the candidate, or the live
-- view. An error is placed on the line of the check's key inside `audit`.
local function check_audit(c, rep, e)
  local audit = e.def.audit
  if type(audit) ~= "table" then return end
  local rel = e.candidate and e.candidate.q or (c:quote_ident(e.fc.schema_name) .. "." .. c:quote_ident(e.def.name))
  for _, p in ipairs(require("matviews.audit").validate(c, audit, rel)) do
    local at = e.text and require("matviews.config").locate(e.text, "audit", e.def.line) or e.def.line
    fail(rep, e, nil, p.message, e.text and require("matviews.config").locate(e.text, p.key, at) or at)
  end
end

-- Reads pg_depend for the edges between the rehearsed relations (the
-- views made, the candidates standing for changed views, the live ones)
-- and builds the dependency graph with the declared dependencies.
local function graph(c, rep, entries, catalog_rows)
  local by_oid = {}
  local oids = {}
  for _, e in ipairs(entries) do
    if e.ready then
      local oid = e.candidate and e.candidate.oid
      if not oid then
        local r = live_rel(c, e.fc.schema_name, e.def.name)
        oid = r and r.oid
      end
      if oid then by_oid[oid] = e.shown; oids[#oids + 1] = oid end
    end
  end
  for _, d in ipairs(catalog_rows) do
    if d.orphan and d.live then by_oid[d.live.oid] = d.label; oids[#oids + 1] = d.live.oid end
  end
  local pairs_ = {}
  if #oids > 0 then
    local list = {}
    for i, o in ipairs(oids) do list[i] = tostring(math.tointeger(o)) end
    for _, r in ipairs(c:query(([[WITH RECURSIVE reads(reader, rel) AS (
        SELECT r.ev_class, dep.refobjid FROM pg_rewrite r
        JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
         AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> r.ev_class
        WHERE r.ev_class = ANY ('{%s}'::oid[])
        UNION
        SELECT reads.reader, dep.refobjid FROM reads
        JOIN pg_class v ON v.oid = reads.rel AND v.relkind = 'v'
        JOIN pg_rewrite r ON r.ev_class = v.oid
        JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
         AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> r.ev_class)
      SELECT DISTINCT reader::bigint AS reader, rel::bigint AS rel FROM reads WHERE rel = ANY ('{%s}'::oid[])]])
        :format(table.concat(list, ","), table.concat(list, ",")))) do
      local up, down = by_oid[r.rel], by_oid[r.reader]
      if up and down and up ~= down then pairs_[#pairs_ + 1] = { upstream = up, downstream = down } end
    end
  end
  local nodes = {}
  for _, e in ipairs(entries) do
    nodes[#nodes + 1] = { id = e.n, schema_name = e.fc.schema_name, name = e.def.name, label = e.shown,
      dependencies = e.fc.dependencies }
  end
  for _, d in ipairs(catalog_rows) do
    if d.orphan then
      nodes[#nodes + 1] = { id = d.id, schema_name = d.schema_name, name = d.name, label = d.label, dependencies = {} }
    end
  end
  local ok, g = pcall(require("matviews.deps").build, nodes, pairs_)
  if ok then return g end
  local msg = error_message(g)
  local who = msg:match("^view (%S+) declares") or msg:match("^dependency cycle: (%S+)")
  for _, e in ipairs(entries) do
    if e.shown == who then fail(rep, e, "depends_on", msg) return nil end
  end
  rep.errors[#rep.errors + 1] = msg
end

-- Rehearses the loaded definitions `defs` (matviews.dsl) on conn. Returns
-- { entries = { key -> entry }, list = { entries sorted by key }, order =
-- { labels in dependency order }, graph, orphans = { catalog definitions
-- without a file }, errors = { "file:line: view 'x': ..." } }.
-- An entry: { key = "schema.name", shown, def, fc (catalog fields, schema
-- resolved), row (catalog definition or nil), live ({ oid, kind, def } or
-- nil), sql_changed, added, removed, retyped, index_forms }.
function M.run(conn, defs)
  local mv = require "matviews"
  local plan = require "matviews.plan"
  local rep = { errors = {}, by_key = {}, list = {}, created_order = {}, orphans = {} }
  local cat, keys = plan.catalog(conn)
  local default_schema = mv.definitions.default_schema(conn)
  local texts = {}
  for n, def in ipairs(defs) do
    local fc, key, shown = plan.file_catalog(conn, def, default_schema)
    if not texts[def.file] then texts[def.file] = require("matviews.files").read(def.file) end
    local e = { n = n, key = key, shown = shown, def = def, fc = fc, row = cat[key], text = texts[def.file] }
    rep.by_key[key] = e
    rep.list[#rep.list + 1] = e
  end
  for _, k in ipairs(keys) do
    if not rep.by_key[k] then
      local d = cat[k]
      d.orphan = true
      d.label = d.schema_name == default_schema and d.name or k -- shown as file views are
      rep.orphans[#rep.orphans + 1] = d
    end
  end
  local ok, err = pcall(mv.transaction, function(c)
    for _, e in ipairs(rep.list) do
      if #c:query("SELECT 1 FROM pg_namespace WHERE nspname = $1", e.fc.schema_name) == 0 then
        fail(rep, e, "schema", ("schema %s does not exist"):format(e.fc.schema_name))
      else
        for _, g in ipairs(e.fc.grants) do
          if g.role:upper() ~= "PUBLIC" and #c:query("SELECT 1 FROM pg_roles WHERE rolname = $1", g.role) == 0 then
            fail(rep, e, "grants", ("grants: role %s does not exist"):format(g.role))
          end
        end
        e.live = live_rel(c, e.fc.schema_name, e.def.name)
        if e.live and e.live.kind ~= "m" then
          fail(rep, e, nil, ("%s.%s exists and is not a materialized view"):format(e.fc.schema_name, e.def.name))
        end
      end
    end
    for _, d in ipairs(rep.orphans) do
      local r = live_rel(c, d.schema_name, d.name)
      d.live = r and r.kind == "m" and r or nil
    end
    create_in_passes(c, rep, rep.list)
    for _, e in ipairs(rep.list) do
      if e.ready and e.sql_changed then check_changed(c, rep, e) end
      if e.ready then check_indexes(c, rep, e) end
      if e.ready then check_audit(c, rep, e) end
    end
    rep.graph = graph(c, rep, rep.list, rep.orphans)
    error(ROLLBACK, 0)
  end, conn)
  if not ok and err ~= ROLLBACK then error(err, 0) end
  if rep.graph then rep.order = require("matviews.deps").order(rep.graph) end
  return rep
end

return M
