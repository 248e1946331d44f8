-- `matviews deps [NAME] [--dot]`: the dependency graph of the defined views
-- (upstream -> downstream), all of it or NAME with everything it reads and
-- everything that reads it. Text table, Graphviz dot, or --json.
local M = {
  name = "deps",
  summary = "Show which views read which (the refresh order); --dot for Graphviz.",
}

function M.configure(cmd)
  cmd:argument("name", "A view: show it with what it reads and what reads it."):args("?")
  cmd:flag("--dot", "Print the graph in Graphviz dot (edges upstream -> downstream).")
end

-- Comma list of the members of `set` (a set of names) within `within`.
local function names_in(deps, set, within)
  local out = {}
  for _, n in ipairs(deps.sorted_keys(set)) do
    if not within or within[n] then out[#out + 1] = n end
  end
  return out
end

function M.run(args, ctx)
  local deps = require "matviews.deps"
  local output = require "matviews.output"
  local g = deps.load()
  local set
  if args.name then
    if not g.nodes[args.name] then
      require("matviews.targets").usage(("no definition named %s"):format(args.name))
    end
    set = deps.around(g, args.name)
  end
  if args.dot then io.write(deps.dot(g, set)); return 0 end
  local rows = {}
  for _, n in ipairs(deps.order(g, set)) do
    local node = g.nodes[n]
    rows[#rows + 1] = { name = n, upstream = names_in(deps, node.upstream, set),
      downstream = names_in(deps, node.downstream, set) }
  end
  if ctx.options.json then
    for _, r in ipairs(rows) do r.upstream, r.downstream = output.array(r.upstream), output.array(r.downstream) end
    output.json({ views = output.array(rows), edges = output.array(deps.edges(g, set)) })
    return 0
  end
  local text = {}
  for i, r in ipairs(rows) do
    text[i] = { name = r.name, reads = table.concat(r.upstream, ", "), read_by = table.concat(r.downstream, ", ") }
  end
  io.write(output.table(text, { { "name", "view" }, { "reads" }, { "read_by", "read by" } }))
  return 0
end

return M
