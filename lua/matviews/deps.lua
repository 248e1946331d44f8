-- The dependency graph of the defined materialized views: which view reads
-- which. Edges come from the database (pg_rewrite + pg_depend: a view's
-- query reads another materialized view directly or through plain views,
-- followed recursively) merged with each definition's declared
-- `dependencies` (names). Edges run upstream -> downstream: the view read
-- first, the reader second. A cycle is an error naming it.
local M = {}

-- Every (upstream, downstream) pair of defined views that the database
-- records, looking through plain views, by label (matviews.definitions).
-- Definitions are found in their stored schema, like the services do.
local DISCOVER = [[
WITH RECURSIVE defs AS (
  SELECT ]] .. require("matviews.definitions").LABEL_SQL .. [[ AS name, c.oid
  FROM mat_view_definitions
  JOIN pg_class c ON c.oid = to_regclass(quote_ident(mat_view_definitions.schema_name) || '.'
                                       || quote_ident(mat_view_definitions.name)) AND c.relkind = 'm'
  WHERE mat_view_definitions.deleted_at IS NULL
), reads(reader, rel) AS (
  SELECT r.ev_class, dep.refobjid
  FROM pg_rewrite r
  JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
   AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> r.ev_class
  WHERE r.ev_class IN (SELECT oid FROM defs)
  UNION
  SELECT reads.reader, dep.refobjid
  FROM reads
  JOIN pg_class v ON v.oid = reads.rel AND v.relkind = 'v'
  JOIN pg_rewrite r ON r.ev_class = v.oid
  JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
   AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> r.ev_class
)
SELECT DISTINCT up.name AS upstream, down.name AS downstream
FROM reads JOIN defs down ON down.oid = reads.reader JOIN defs up ON up.oid = reads.rel
WHERE up.name <> down.name
ORDER BY 1, 2]]

-- Whether any materialized view's query reads a materialized view or a
-- plain view: when none does, DISCOVER finds nothing (its first step reads
-- only such relations, and it follows only plain views). On a new session
-- this costs a fifth of DISCOVER (mostly its planning), and the common
-- case of views over tables skips DISCOVER.
local ANY_READS = [[
SELECT EXISTS (
  SELECT 1 FROM pg_rewrite r
  JOIN pg_class reader ON reader.oid = r.ev_class AND reader.relkind = 'm'
  JOIN pg_depend dep ON dep.classid = 'pg_rewrite'::regclass AND dep.objid = r.oid
   AND dep.refclassid = 'pg_class'::regclass AND dep.refobjid <> r.ev_class
  JOIN pg_class rel ON rel.oid = dep.refobjid AND rel.relkind IN ('m', 'v')
) AS any]]

local function sorted_keys(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end
M.sorted_keys = sorted_keys

-- Adds the edge up -> down from `source` ("catalog" or "declared").
local function add_edge(g, up, down, source)
  local key = up .. "\0" .. down
  local e = g.edge_index[key]
  if e then
    if not e.sources[source] then e.sources[source] = true end
    return
  end
  e = { from = up, to = down, sources = { [source] = true } }
  g.edge_index[key] = e
  g.edges[#g.edges + 1] = e
  g.nodes[up].downstream[down] = true
  g.nodes[down].upstream[up] = true
end

-- The node a declared dependency means: "schema.name" exactly; a plain
-- name the definition of that name in the reader's own schema, else the
-- only one of that name. nil when there is none (or several elsewhere).
local function declared_node(g, d, dep)
  local schema, name = tostring(dep):match("^([^.]+)%.([^.]+)$")
  if schema then return g.by_qualified[schema .. "." .. name] end
  name = tostring(dep)
  if d.schema_name and g.by_qualified[d.schema_name .. "." .. name] then
    return g.by_qualified[d.schema_name .. "." .. name]
  end
  local found = g.by_name[name]
  if found and #found == 1 then return found[1] end
end

-- Builds a graph from definition rows { id, schema_name, name, label,
-- dependencies } and discovered pairs { upstream, downstream } (labels).
-- Nodes are keyed by label. Raises on unknown declared names and on cycles.
function M.build(defs, pairs_)
  local mv = require "matviews"
  local g = { nodes = {}, edges = {}, edge_index = {}, names = {}, by_qualified = {}, by_name = {} }
  for _, d in ipairs(defs) do
    local label = d.label or d.name
    g.nodes[label] = { name = label, id = d.id, schema_name = d.schema_name, schedule_cron = d.schedule_cron,
      upstream = {}, downstream = {} }
    g.names[#g.names + 1] = label
    if d.schema_name then g.by_qualified[d.schema_name .. "." .. d.name] = label end
    g.by_name[d.name] = g.by_name[d.name] or {}
    table.insert(g.by_name[d.name], label)
  end
  table.sort(g.names)
  for _, p in ipairs(pairs_) do add_edge(g, p.upstream, p.downstream, "catalog") end
  for _, d in ipairs(defs) do
    local label = d.label or d.name
    local declared = d.dependencies
    if type(declared) == "string" then declared = mv.json.decode(declared) end
    for _, dep in ipairs(type(declared) == "table" and declared or {}) do
      local name = declared_node(g, d, dep)
      if not name then
        mv.error(("view %s declares a dependency on %q, which is not a defined view"):format(label, tostring(dep)))
      end
      if name == label then
        mv.error(("dependency cycle: %s -> %s"):format(name, name))
      end
      add_edge(g, name, label, "declared")
    end
  end
  local cycle = M.find_cycle(g)
  if cycle then mv.error("dependency cycle: " .. table.concat(cycle, " -> ")) end
  return g
end

-- Loads the graph of every definition from the database (conn or mv.conn());
-- a database without the catalog is an error saying to run `matviews init`,
-- a corrupt definition row one naming it (mv.definitions.list).
function M.load(conn)
  local mv = require "matviews"
  conn = conn or mv.conn()
  local defs, targets = mv.definitions.list(conn), require("matviews.targets")
  local any = #defs > 1 and targets.query(conn, ANY_READS)[1].any
  return M.build(defs, any and targets.query(conn, DISCOVER) or {})
end

-- A cycle as a list of names ending where it starts, or nil. Searches from
-- names in order along upstream -> downstream edges.
function M.find_cycle(g)
  local state, stack = {}, {}
  local function visit(name)
    state[name] = "open"
    stack[#stack + 1] = name
    for _, down in ipairs(sorted_keys(g.nodes[name].downstream)) do
      if state[down] == "open" then
        local path, start = {}, nil
        for i, n in ipairs(stack) do if n == down then start = i end end
        for i = start, #stack do path[#path + 1] = stack[i] end
        path[#path + 1] = down
        return path
      elseif not state[down] then
        local found = visit(down)
        if found then return found end
      end
    end
    stack[#stack] = nil
    state[name] = "done"
  end
  for _, name in ipairs(g.names) do
    if not state[name] then
      local found = visit(name)
      if found then return found end
    end
  end
  return nil
end

-- The set of names reachable from name along `dir` ("upstream" or
-- "downstream"), name itself excluded.
function M.closure(g, name, dir)
  local seen, todo = {}, { name }
  while #todo > 0 do
    local n = table.remove(todo)
    for next_name in pairs(g.nodes[n][dir]) do
      if not seen[next_name] then seen[next_name] = true; todo[#todo + 1] = next_name end
    end
  end
  return seen
end

-- Puts name into list, sorted descending, at its place.
function M.insert_descending(list, name)
  local lo, hi = 1, #list + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if list[mid] > name then lo = mid + 1 else hi = mid end
  end
  table.insert(list, lo, name)
end

-- The names of `set` (all when nil) in dependency order: each after
-- everything it reads; ties by name. The names ready to go are kept
-- sorted descending (the next one last): sorted once, then each name that
-- becomes ready put at its place, not the list sorted again per name
-- (quadratic over a thousand independent views).
function M.order(g, set)
  local waiting, ready, out = {}, {}, {}
  for _, n in ipairs(g.names) do
    if not set or set[n] then
      local k = 0
      for up in pairs(g.nodes[n].upstream) do if not set or set[up] then k = k + 1 end end
      waiting[n] = k
      if k == 0 then ready[#ready + 1] = n end
    end
  end
  table.sort(ready)
  for i = 1, #ready // 2 do ready[i], ready[#ready + 1 - i] = ready[#ready + 1 - i], ready[i] end
  while #ready > 0 do
    local n = table.remove(ready)
    out[#out + 1] = n
    for down in pairs(g.nodes[n].downstream) do
      if waiting[down] then
        waiting[down] = waiting[down] - 1
        if waiting[down] == 0 then M.insert_descending(ready, down) end
      end
    end
  end
  return out
end

-- The set of `name` with its upstream and downstream closures.
function M.around(g, name)
  local set = { [name] = true }
  for n in pairs(M.closure(g, name, "upstream")) do set[n] = true end
  for n in pairs(M.closure(g, name, "downstream")) do set[n] = true end
  return set
end

-- The edges between members of set (all when nil), in (from, to) order.
function M.edges(g, set)
  local out = {}
  for _, e in ipairs(g.edges) do
    if not set or (set[e.from] and set[e.to]) then
      out[#out + 1] = { from = e.from, to = e.to, sources = sorted_keys(e.sources) }
    end
  end
  table.sort(out, function(a, b) return a.from < b.from or (a.from == b.from and a.to < b.to) end)
  return out
end

-- Graphviz text of the views of set (all when nil): each node, then each
-- edge as "upstream" -> "downstream"; declared-only edges are dashed.
function M.dot(g, set)
  local function q(s) return '"' .. s:gsub('[\\"]', "\\%0") .. '"' end
  local lines = { "digraph matviews {", "  rankdir=LR;" }
  for _, n in ipairs(M.order(g, set)) do
    lines[#lines + 1] = "  " .. q(n) .. ";"
  end
  for _, e in ipairs(M.edges(g, set)) do
    local style = (#e.sources == 1 and e.sources[1] == "declared") and " [style=dashed]" or ""
    lines[#lines + 1] = "  " .. q(e.from) .. " -> " .. q(e.to) .. style .. ";"
  end
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n") .. "\n"
end

return M
