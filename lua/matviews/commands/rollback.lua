-- `matviews rollback NAME --to N`: makes version N of a definition current
-- and deploys it through the same path as apply (rehearsal, save, replace
-- without blocking readers). The files still say what they say: the next
-- apply deploys them again, so change the file too.
local output = require "matviews.output"

local M = {
  name = "rollback",
  summary = "Make version N of a definition current and deploy it (replace).",
}

function M.configure(cmd)
  cmd:argument("name", "A definition name (schema-qualified allowed) or id.")
  cmd:option("--to", "The version to make current."):convert(math.tointeger)
end

function M.run(args, ctx)
  if not args.to then require("matviews.targets").usage("rollback needs --to N (see matviews history NAME)") end
  local plan_cmd = require "matviews.commands.plan"
  local p = require("matviews.versions").rollback(ctx.mv.conn(), args.name, args.to)
  if not p.valid then return plan_cmd.report_errors(ctx, p, "nothing rolled back") end
  output.emit(ctx, plan_cmd.document(p), function()
    if #p.actions == 0 then print("nothing to do: version " .. args.to .. " is what is deployed") return end
    for _, a in ipairs(p.actions) do
      if a.status then print(a.line .. (a.status == "failed" and (": failed: " .. tostring(a.error)) or ": done")) end
    end
  end)
  return p.ok and 0 or 1
end

return M
