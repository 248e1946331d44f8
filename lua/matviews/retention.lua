-- Retention of run history: which rows of the three run tables to keep,
-- and pruning the rest in short batches.
--
-- A policy is a table { keep_last = N, keep_days = D, keep_failures = true }
-- or a function. A run is kept when any rule keeps it: it is among the N
-- newest successful runs of its view (in that table), it was created less
-- than D days ago, or it failed and keep_failures is true (the default).
-- Pending and running runs are always kept; a policy with neither keep_last
-- nor keep_days keeps everything. The global policy is the configuration's
-- `retention`; a view's `retention` (catalog column, from its definition
-- file) replaces it for that view.
--
-- A custom policy is function(runs, ctx) returning the runs to keep (an
-- array of run tables or of ids, or a set { [id] = true }, all of them from
-- runs: any other result is an error and nothing is deleted). runs: that view's runs of
-- one table, newest first, each { id, status = "success"|..., created_at,
-- started_at, finished_at (text), age_s (seconds since created_at),
-- duration_ms, error }; ctx = { view = name, op = "create"|"refresh"|"delete",
-- table = "mat_view_..._runs" }.
local M = {}

-- Marks a table as a JSON array (written [] when empty) where the output
-- module can (matviews.output.array); else returns it as it is.
local array = require("matviews.output").array or function(t) return t or {} end

-- Raises a matviews error table (message [, sqlstate]).
local function raise(e) require("matviews.core").error(e) end

local catalog = require "matviews.catalog"
local vocab = require "matviews.vocab"
M.TABLES = {}
for i, op in ipairs(catalog.OPS) do M.TABLES[i] = { op = op, table = catalog.RUN_TABLES[op] } end
M.BATCH = 5000 -- ids per DELETE, each statement its own transaction

local STATUS = catalog.STATUS
local POLICY_KEYS = { keep_last = true, keep_days = true, keep_failures = true }
local WANT = "a policy { keep_last = N, keep_days = D, keep_failures = bool } or a function"

-- nil when v is a valid policy, else what it must be (and why).
function M.check(v)
  if type(v) == "function" then return nil end
  if type(v) ~= "table" then return WANT end
  for k, x in pairs(v) do
    if not POLICY_KEYS[k] then
      local near = type(k) == "string" and require("matviews.config").closest(k, POLICY_KEYS)
      return WANT .. " (unknown key '" .. tostring(k) .. "'" .. (near and (", did you mean '" .. near .. "'?") or "") .. ")"
    end
    -- JSON gives numbers back as floats: an integral one is an integer
    if k == "keep_last" and (type(x) ~= "number" or math.tointeger(x) == nil or x < 0) then
      return WANT .. " (keep_last: a non-negative integer)"
    elseif k == "keep_days" and (type(x) ~= "number" or x <= 0) then
      return WANT .. " (keep_days: a positive number)"
    elseif k == "keep_failures" and type(x) ~= "boolean" then
      return WANT .. " (keep_failures: a boolean)"
    end
  end
end

-- The policy of one view: its own (catalog or file) else the global one.
-- Tables get keep_failures = true unless they say otherwise.
local function resolve(own, global)
  local p = own ~= nil and own or global
  if type(p) ~= "table" then return p end
  local keep_failures = p.keep_failures
  if keep_failures == nil then keep_failures = true end
  return { keep_last = p.keep_last, keep_days = p.keep_days, keep_failures = keep_failures }
end

-- Parses "1,2,3" into an array of integers.
local function ids_of(text)
  local out = {}
  if type(text) ~= "string" then return out end
  for d in text:gmatch("%d+") do out[#out + 1] = math.tointeger(tonumber(d)) end
  return out
end

-- Per view (table policies): ids to delete and the count kept, in one pass.
local RANKED = vocab.sql[[
WITH pol AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS p(id bigint, keep_last integer, keep_days double precision, keep_failures boolean)
), ranked AS (
  SELECT r.id, r.mat_view_definition_id AS def_id, r.status, r.created_at,
         row_number() OVER (PARTITION BY r.mat_view_definition_id, r.status
                            ORDER BY r.created_at DESC, r.id DESC) AS rn
  FROM %s r WHERE r.mat_view_definition_id IN (SELECT id FROM pol)
), judged AS (
  SELECT k.id, k.def_id,
         k.status IN ({success}, {failed})
         AND NOT (k.status = {success} AND p.keep_last IS NOT NULL AND k.rn <= p.keep_last)
         AND NOT (p.keep_days IS NOT NULL AND k.created_at >= now() - p.keep_days * interval '1 day')
         AND NOT (k.status = {failed} AND p.keep_failures) AS doomed
  FROM ranked k JOIN pol p ON p.id = k.def_id
)
SELECT def_id, count(*) FILTER (WHERE NOT doomed) AS keep,
       string_agg(id::text, ',' ORDER BY id) FILTER (WHERE doomed) AS ids
FROM judged GROUP BY def_id]]

-- A value as a message shows it: strings quoted, tables as JSON.
local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" then
    local ok, text = pcall(require("cjson").encode, v)
    if ok then return text end
  end
  return tostring(v)
end

-- The ids a custom policy keeps, from its result ret: an array of run ids
-- or of the run tables it was given, or a set { [id] = true }, every id one
-- of runs. Anything else raises naming the policy (where), so that a
-- mistaken result ({ [id] = 1 }, string ids) deletes nothing.
local function kept_ids(ret, runs, where)
  local given = {}
  for _, r in ipairs(runs) do given[r.id] = r end
  local function bad(why)
    raise({ message = ("%s returned %s: return the runs to keep (an array of their ids or of the run tables given)")
      :format(where, why) })
  end
  if type(ret) ~= "table" then bad("a " .. type(ret)) end
  local keep, n = {}, #ret
  for k, v in pairs(ret) do
    local id = v
    if v == true then id = k                                        -- a set of ids
    elseif math.type(k) ~= "integer" or k < 1 or k > n then         -- not an array
      bad(("an entry [%s] = %s"):format(show(k), show(v)))
    elseif type(v) == "table" then id = v.id                        -- a run table
      if given[id] ~= v then bad(("an entry %s that is not one of the run tables given"):format(show(v))) end
    end
    if math.type(id) ~= "integer" or not given[id] then
      bad(("%s, which is not the id of a run it was given"):format(show(id)))
    end
    keep[id] = true
  end
  return keep
end

-- Applies a custom policy to one view's runs of one table; returns the ids
-- to delete and the count kept. The function runs under the configured
-- instruction budget.
local function custom(conn, fn, tbl, d)
  local runs = conn:query(("SELECT id, status, created_at::text, started_at::text, finished_at::text,"
    .. " extract(epoch FROM now() - created_at)::float8 AS age_s, duration_ms, error"
    .. " FROM %s WHERE mat_view_definition_id = $1 ORDER BY created_at DESC, id DESC"):format(tbl.table), d.id)
  for _, r in ipairs(runs) do r.status = STATUS[r.status] or r.status end
  local where = "retention policy of " .. d.name
  local ok, ret = pcall(require("matviews.config").bounded, where, fn, runs,
    { view = d.name, op = tbl.op, table = tbl.table })
  if not ok then
    raise({ message = ("%s (%s): %s"):format(where, tbl.table,
      type(ret) == "table" and ret.message ~= nil and tostring(ret.message) or type(ret) == "string" and ret or show(ret)) })
  end
  local keep = kept_ids(ret, runs, ("%s (%s)"):format(where, tbl.table))
  local doomed, kept = {}, 0
  for _, r in ipairs(runs) do
    if keep[r.id] or r.status == "pending" or r.status == "running" then kept = kept + 1
    else doomed[#doomed + 1] = r.id end
  end
  table.sort(doomed)
  return doomed, kept
end

-- Custom (function) policies declared in definition files, by view name;
-- loaded only when the catalog says some view has one.
local function file_policies(dir)
  local defs, errs = require("matviews.dsl").load_dir(dir)
  if not defs then raise({ message = table.concat(errs, "\n") }) end
  local out = {}
  for _, d in ipairs(defs) do
    if type(d.retention) == "function" then out[d.name] = d.retention end
  end
  return out
end

-- Works out what to delete. opts: conn, policy (global; default config's
-- retention), definitions (dir for custom per-view functions), view (only
-- this one). Returns items { table, op, view, definition_id, delete = n,
-- keep = n, ids = {...} } sorted by table then view.
function M.plan(opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  local global = opts.policy
  if global == nil then global = mv.config().retention end
  mv.definitions.check(conn)
  local defs = conn:query("SELECT id, " .. require("matviews.definitions").label_sql("d")
    .. " AS name, retention::text AS retention FROM mat_view_definitions d WHERE d.deleted_at IS NULL"
    .. " ORDER BY d.name, d.schema_name")
  local fns, tables, funcs = nil, {}, {}
  for _, d in ipairs(defs) do
    if opts.view == nil or opts.view == d.name then
      local own = d.retention ~= mv.null and mv.json.decode(d.retention) or nil
      if type(own) == "table" and own.custom then
        fns = fns or file_policies(opts.definitions)
        own = fns[d.name]
        if not own then
          raise({ message = ("view %s has a custom retention policy but its definition file declares none"):format(d.name) })
        end
      end
      local p = resolve(own, global)
      if type(p) == "function" then funcs[#funcs + 1] = { d = d, fn = p }
      elseif type(p) == "table" and (p.keep_last or p.keep_days) then
        tables[#tables + 1] = { id = d.id, keep_last = p.keep_last, keep_days = p.keep_days,
          keep_failures = p.keep_failures }
      end
    end
  end
  local names, items = {}, array()
  for _, d in ipairs(defs) do names[d.id] = d.name end
  for _, tbl in ipairs(M.TABLES) do
    if #tables > 0 then
      for _, r in ipairs(conn:query(RANKED:format(tbl.table), tables)) do
        local ids = ids_of(r.ids)
        items[#items + 1] = { table = tbl.table, op = tbl.op, view = names[r.def_id],
          definition_id = r.def_id, delete = #ids, keep = r.keep, ids = ids }
      end
    end
    for _, f in ipairs(funcs) do
      local ids, kept = custom(conn, f.fn, tbl, f.d)
      if #ids + kept > 0 then
        items[#items + 1] = { table = tbl.table, op = tbl.op, view = f.d.name,
          definition_id = f.d.id, delete = #ids, keep = kept, ids = ids, custom = true }
      end
    end
  end
  table.sort(items, function(a, b)
    if a.table ~= b.table then return a.table < b.table end
    return a.view < b.view
  end)
  return items
end

-- Deletes items' ids in batches of opts.batch_size (default M.BATCH) ids,
-- each DELETE its own transaction, so no statement holds a run table's
-- locks for long. Then VACUUM (ANALYZE) each table that lost rows (when not
-- inside a transaction). Returns the number of rows deleted; opts.stats, when
-- given, receives batches = n and slowest_ms (the longest DELETE).
function M.delete(items, opts)
  opts = opts or {}
  local mv = require "matviews"
  local conn = opts.conn or mv.conn()
  local batch = opts.batch_size or M.BATCH
  local clock = mv.core.sys.monotonic_ms
  local stats = opts.stats or {}
  stats.batches, stats.slowest_ms = 0, 0
  local total, touched = 0, {}
  for _, it in ipairs(items) do
    it.deleted = 0
    for i = 1, #it.ids, batch do
      local slice = table.concat(it.ids, ",", i, math.min(i + batch - 1, #it.ids))
      local t0 = clock()
      it.deleted = it.deleted + conn:exec(("DELETE FROM %s WHERE id = ANY($1::bigint[])"):format(it.table),
        "{" .. slice .. "}")
      stats.batches, stats.slowest_ms = stats.batches + 1, math.max(stats.slowest_ms, clock() - t0)
    end
    total = total + it.deleted
    if it.deleted > 0 then touched[it.table] = true end
  end
  if not conn:info().in_transaction then
    for _, tbl in ipairs(M.TABLES) do
      if touched[tbl.table] then conn:exec("VACUUM (ANALYZE) " .. tbl.table) end
    end
  end
  return total
end

-- mv.prune(opts): plan, then delete unless opts.dry_run. Returns
-- { dry_run = bool, deleted = n, items = { { table, view, delete, keep, deleted } } }.
function M.prune(opts)
  opts = opts or {}
  local items = M.plan(opts)
  local deleted = 0
  if not opts.dry_run then deleted = M.delete(items, opts) end
  for _, it in ipairs(items) do it.ids = nil end
  return { dry_run = opts.dry_run and true or false, deleted = deleted, items = items }
end

return M
