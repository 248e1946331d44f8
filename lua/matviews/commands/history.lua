-- `matviews history NAME`: the versions of a definition, oldest first: when,
-- by which database user, what changed, and a diff of the SQL.
local output = require "matviews.output"

local M = {
  name = "history",
  summary = "List the versions of a definition, with a diff of the SQL.",
}

function M.configure(cmd)
  cmd:argument("name", "A definition name (schema-qualified allowed) or id.")
end

function M.run(args, ctx)
  local rows = require("matviews.versions").list(ctx.mv.conn(), args.name)
  output.emit(ctx, output.array(rows), function()
    for _, r in ipairs(rows) do
      local what = r.version == rows[1].version and "created" or table.concat(r.changed, ", ")
      print(("version %d  %s  %s  %s"):format(r.version, r.created_at, r.created_by, what))
      for _, l in ipairs(r.diff or {}) do print("    " .. l) end
    end
  end)
  return 0
end

return M
