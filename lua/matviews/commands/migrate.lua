-- `matviews migrate [up [N]|down [N]|status|new NAME]`: scripted migrations
-- (lua/matviews/migrate.lua). up applies the pending ones (all, or N), down
-- reverts the last applied (1, or N), status lists each with applied,
-- pending, changed (file edited after it was applied) or missing (file gone).
-- A failing migration leaves nothing of itself applied, stops the run and
-- exits 1 naming it. Bad N: exit 2. new NAME writes the next
-- migrations/NNN_NAME.lua with an up/down skeleton.
local migrate = require "matviews.migrate"
local output = require "matviews.output"

local M = {
  name = "migrate",
  summary = "Run scripted migrations: up [N] (default), down [N], status; new NAME writes one.",
}

function M.configure(cmd)
  cmd:argument("action", "up (default), down, status or new."):choices({ "up", "down", "status", "new" }):args("?")
  cmd:argument("count", "How many: up applies all pending by default, down reverts 1; "
    .. "after new, the name of the migration to write."):args("?")
end

-- One JSON document; empty lists under keys stay arrays (cjson would write {}).
local function json(doc, keys)
  local text = require("cjson").encode(doc)
  for _, k in ipairs(keys) do
    text = text:gsub('"' .. k .. '":{}', '"' .. k .. '":[]')
  end
  io.stdout:write(text, "\n")
end

local function print_status(dir, list)
  if #list == 0 then print("no migrations in " .. dir .. "/"); return end
  io.write(output.table(list, {
    { "version", "version", align = "right" }, { "name", "name" }, { "status", "status" },
    { "applied_at", "applied_at" },
  }))
end

-- up or down; prints what was done, the changed files, the failure.
local function run_steps(action, n, ctx)
  local mv = ctx.mv
  local res = migrate[action](mv, n)
  for _, id in ipairs(action == "up" and res.changed or {}) do
    io.stderr:write(("warning: migration %s changed since it was applied\n"):format(id))
  end
  if ctx.options.json then
    json({ action = action, done = res.done, failed = res.failed, changed = res.changed }, { "done", "changed" })
  else
    for _, d in ipairs(res.done) do
      print(("%s %s (%d ms)"):format(action == "up" and "applied" or "reverted", d.id, d.ms))
    end
    if #res.done == 0 and not res.failed then
      print(action == "up" and "nothing to migrate" or "nothing to revert")
    end
  end
  if res.failed then
    io.stderr:write(("matviews: migration %s failed: %s\n"):format(res.failed.id, res.failed.error))
    return 1
  end
  return 0
end

function M.run(args, ctx)
  local action = args.action or "up"
  if action == "new" then
    print("created " .. migrate.new(ctx.mv, args.count))
    return 0
  end
  local n
  if args.count then
    n = math.tointeger(tonumber(args.count))
    if action == "status" or not n or n < 1 then
      require("matviews.targets").usage(("migrate %s: '%s' is not a count (a positive integer after up or down)")
        :format(action, args.count))
    end
  end
  if action ~= "status" then return run_steps(action, n, ctx) end
  local dir, shown = migrate.dir(ctx.mv)
  local list = migrate.status(ctx.mv)
  if ctx.options.json then
    json({ directory = dir, migrations = list }, { "migrations" })
  else
    print_status(shown, list)
  end
  return 0
end

return M
