-- The actions that bring the database to the definition files: what `plan`
-- shows and `apply` runs, one list for both, worked out from a rehearsal
-- (matviews.rehearsal) and the live database. In dependency order, per
-- view: save (the catalog row), create or replace (with `rebuild` for each
-- dependent the replace rebuilds), index add, grant, revoke, comment; then,
-- with prune, index drop and drop of the views whose files are gone
-- (readers first). Each action: { action, view, key, file, detail, sql,
-- line } where line is the one-line text plan prints.
local plan = require "matviews.plan"
local rehearsal = require "matviews.rehearsal"

local M = {}

local array = require("matviews.output").array

-- The views bound to live view oid through their _RETURN rules,
-- recursively, readers after what they read: { { rel = "schema.rel", kind } }.
local function bound_views(conn, oid)
  return conn:query([[WITH RECURSIVE deps(oid, depth) AS (
      SELECT $1::oid, 0
      UNION
      SELECT r.ev_class, deps.depth + 1 FROM deps
      JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = deps.oid
       AND d.classid = 'pg_rewrite'::regclass
      JOIN pg_rewrite r ON r.oid = d.objid AND r.rulename = '_RETURN' AND r.ev_class <> deps.oid)
    SELECT n.nspname || '.' || c.relname AS rel, CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END AS kind
    FROM (SELECT oid, max(depth) AS depth FROM deps WHERE depth > 0 GROUP BY oid) v
    JOIN pg_class c ON c.oid = v.oid JOIN pg_namespace n ON n.oid = c.relnamespace
    ORDER BY v.depth, c.oid]], oid)
end
M.bound_views = bound_views

-- The live indexes of relation (quoted): { { name, form } } by name.
local function live_indexes(conn, quoted)
  local out = {}
  for _, r in ipairs(conn:query([[SELECT i.relname AS name, pg_get_indexdef(i.oid) AS def
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1::regclass
      ORDER BY i.relname]], quoted)) do
    out[#out + 1] = { name = r.name, form = rehearsal.index_form(r.def) }
  end
  return out
end

-- Why a view is replaced, from the rehearsal's column comparison.
local function replace_detail(e)
  local parts = {}
  if #e.added > 0 then parts[#parts + 1] = "columns added: " .. table.concat(e.added, ", ") end
  if #e.removed > 0 then parts[#parts + 1] = "columns removed: " .. table.concat(e.removed, ", ") end
  if #e.retyped > 0 then parts[#parts + 1] = "column types changed: " .. table.concat(e.retyped, ", ") end
  if #parts == 0 then parts[1] = "same columns" end
  return "SQL changed, " .. table.concat(parts, "; ")
end

-- Appends an action to list.
local function add(list, a)
  a.line = a.line or (a.action .. " " .. a.view .. (a.detail and (": " .. a.detail) or ""))
  list[#list + 1] = a
end

-- The live convergence of entry e (a view that exists now): declared
-- indexes missing, undeclared ones (dropped with prune, else noted),
-- grants and the comment.
local function converge_live(conn, e, opts, list, notes)
  local quoted = conn:quote_ident(e.fc.schema_name) .. "." .. conn:quote_ident(e.def.name)
  local have = {}
  for _, ix in ipairs(live_indexes(conn, quoted)) do
    have[ix.form] = have[ix.form] or {}
    table.insert(have[ix.form], ix.name)
  end
  for i, ix in ipairs(plan.declared_indexes(e.fc)) do
    local form = e.index_forms[i]
    if form and have[form] and #have[form] > 0 then table.remove(have[form], 1)
    elseif form then
      add(list, { action = "index add", view = e.shown, key = e.key, detail = ix.name,
        line = ("index add %s on %s"):format(ix.name, e.shown),
        sql = require("matviews.indexes").create_sql(conn, ix, quoted) })
    end
  end
  local extra = {}
  for _, names in pairs(have) do for _, n in ipairs(names) do extra[#extra + 1] = n end end
  table.sort(extra)
  for _, n in ipairs(extra) do
    local sql = ("DROP INDEX %s.%s"):format(conn:quote_ident(e.fc.schema_name), conn:quote_ident(n))
    if opts.prune then
      add(list, { action = "index drop", view = e.shown, key = e.key, detail = n, sql = sql,
        line = ("index drop %s on %s"):format(n, e.shown) })
    else notes[#notes + 1] = ("index %s on %s is not declared (apply --prune drops it)"):format(n, e.shown) end
  end
  local l = plan.live(conn, e.fc)
  for _, g in ipairs(l.grants_missing) do
    add(list, { action = "grant", view = e.shown, key = e.key, detail = g.privilege .. " to " .. g.role,
      line = ("grant %s on %s to %s"):format(g.privilege, e.shown, g.role),
      sql = plan.grant_sql(conn, "grant", g, quoted) })
  end
  for _, g in ipairs(l.grants_extra) do
    add(list, { action = "revoke", view = e.shown, key = e.key, detail = g.privilege .. " from " .. g.role,
      line = ("revoke %s on %s from %s"):format(g.privilege, e.shown, g.role),
      sql = plan.grant_sql(conn, "revoke", g, quoted) })
  end
  if e.fc.comment then
    local cur = conn:query("SELECT obj_description($1::regclass, 'pg_class') AS c", quoted)[1].c
    if cur ~= e.fc.comment then
      add(list, { action = "comment", view = e.shown, key = e.key, detail = ("%q"):format(e.fc.comment),
        line = ("comment on %s"):format(e.shown),
        sql = conn:query("SELECT format('COMMENT ON MATERIALIZED VIEW %s IS %L', $1::text, $2::text) AS s",
          quoted, e.fc.comment)[1].s })
    end
  end
end

-- The prune actions: drop each orphan's view (readers first) and its
-- definition; a view others read is refused unless cascade.
local function prune_actions(conn, rep, opts, list, errors)
  local order = rep.order or {}
  local by_label = {}
  for _, d in ipairs(rep.orphans) do by_label[d.label] = d end
  for i = #order, 1, -1 do
    local d = by_label[order[i]]
    if d then
      local detail = not d.live and "definition only, no view" or nil
      if d.live then
        local readers = {}
        for _, b in ipairs(bound_views(conn, d.live.oid)) do readers[#readers + 1] = b.rel end
        if #readers > 0 and not opts.cascade then
          errors[#errors + 1] = ("apply --prune would drop %s, which %s read%s: add --cascade to drop %s too")
            :format(d.label, table.concat(readers, ", "), #readers == 1 and "s" or "", #readers == 1 and "it" or "them")
        elseif #readers > 0 then
          detail = "cascade: " .. table.concat(readers, ", ")
        end
      end
      add(list, { action = "drop", view = d.label, key = d.schema_name .. "." .. d.name, id = d.id,
        detail = detail, exists = d.live ~= nil })
    end
  end
end

-- Works out the actions. rep: a rehearsal; opts: prune, cascade. Returns
-- { actions = {...}, notes = {...}, errors = {...} }.
function M.compute(conn, rep, opts)
  opts = opts or {}
  local list, notes, errors = array(), array(), array()
  for _, err in ipairs(rep.errors) do errors[#errors + 1] = err end
  local by_label = {}
  for _, e in ipairs(rep.list) do by_label[e.shown] = e end
  for _, label in ipairs(rep.order or {}) do
    local e = by_label[label]
    if e and not e.invalid then
      local file = e.def.file .. ":" .. e.def.line
      local changed = e.row and plan.changed_fields(e.fc, e.row) or nil
      if not e.row then
        add(list, { action = "save", view = e.shown, key = e.key, file = file, detail = "new definition",
          line = ("save %s (new)"):format(e.shown) })
      elseif #changed > 0 then
        add(list, { action = "save", view = e.shown, key = e.key, file = file, detail = table.concat(changed, ", "),
          line = ("save %s (%s)"):format(e.shown, table.concat(changed, ", ")) })
      end
      if not e.live then
        add(list, { action = "create", view = e.shown, key = e.key, file = file })
      else
        if e.sql_changed then
          add(list, { action = "replace", view = e.shown, key = e.key, file = file, detail = replace_detail(e) })
          for _, b in ipairs(bound_views(conn, e.live.oid)) do
            add(list, { action = "rebuild", view = e.shown, key = e.key, detail = b.rel,
              line = ("  rebuild dependent %s (%s)"):format(b.rel, b.kind) })
          end
        end
        converge_live(conn, e, opts, list, notes)
      end
    end
  end
  for _, d in ipairs(rep.orphans) do
    if not opts.prune then
      notes[#notes + 1] = ("%s has a definition but no file (apply --prune drops it)"):format(d.label)
    end
  end
  if opts.prune then prune_actions(conn, rep, opts, list, errors) end
  for _, a in ipairs(list) do
    if a.action == "replace" then
      notes[#notes + 1] = "a replace builds the new SQL beside the live view; readers wait only for the final "
        .. "swap transaction (bounded by lock_timeout_ms), never for the build"
      break
    end
  end
  return { actions = list, notes = notes, errors = errors }
end

-- What `plan` and `apply --dry-run` print and mv.plan() returns: loads
-- the files (or takes opts.defs, loaded definitions), rehearses, works out
-- the actions. opts: conn, definitions (dir), defs, prune, cascade. Returns { in_sync, valid, actions, notes, errors }.
function M.plan(opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  local defs, errs = opts.defs, nil
  if not defs then defs, errs = require("matviews.dsl").load_dir(opts.definitions) end
  if not defs then
    return { valid = false, in_sync = false, actions = array(), notes = array(), errors = array(errs) }
  end
  local rep = rehearsal.run(conn, defs)
  local out = M.compute(conn, rep, opts)
  out.valid = #out.errors == 0
  out.in_sync = out.valid and #out.actions == 0
  out.rehearsal = rep
  return out
end

return M
