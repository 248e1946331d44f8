-- The demo (`make demo`): on the default database (the embedded cluster when
-- nothing else is set), seeds users, accounts, events and sessions, applies
-- the four definitions of definitions/ (mv.apply: the views are created
-- with their unique indexes), refreshes each with its strategy (regular,
-- concurrent and swap are all used; the swap one is audited before it is
-- published), after showing first a refresh that its audit refuses (a
-- broken load: a refund larger than a user's revenue, removed again), then
-- prints the run summary and the
-- validation table, and writes the run history as report.html
-- (`matviews report --html`).
-- Run again, it reuses the data and the views that exist, and deploys a
-- change: mv_user_accounts alternates between its file and a variant with
-- one more column (first_account_at), which apply replaces without blocking
-- the view's readers.
--
--   matviews run demo/demo.lua [--users N]      (or DEMO_USERS=N make demo)
local mv = require "matviews"

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "demo"
local seed = dofile(here .. "/seed.lua")
local root = here:match("^(.*)/demo$") or "."

local DEMO = { "mv_users", "mv_user_accounts", "mv_user_accounts_events", "mv_user_activity" }

local clock = mv.core.sys.monotonic_ms
local started = clock()

-- Prints one step line: what, detail, elapsed ms.
local function step(what, detail, ms)
  print(("%-8s %-66s %7.0f ms"):format(what, detail, ms or 0))
end

-- The definitions directory to deploy: definitions/ on the first run and
-- every other run after it; on the others a copy in `scratch` (a private
-- directory the caller removes) where mv_user_accounts has one more column
-- (so each run after the first shows a replace).
local function definitions_dir(scratch)
  local live = mv.query([[SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('mv_user_accounts')
    AND attname = 'first_account_at']])
  local exists = mv.query("SELECT to_regclass('mv_user_accounts') IS NOT NULL AS ok")[1].ok
  if not exists or #live > 0 then return root .. "/definitions" end
  local dir = scratch
  local files = require "matviews.files"
  for _, f in ipairs(mv.core.sys.listdir(root .. "/definitions")) do
    local text = assert(files.read(root .. "/definitions/" .. f))
    if f == "mv_user_accounts.lua" then
      text = text:gsub("max%(a%.plan%) AS top_plan", "max(a.plan) AS top_plan,\n           min(a.created_at) AS first_account_at")
    end
    local out = assert(io.open(dir .. "/" .. f, "w"))
    out:write(text)
    out:close()
  end
  return dir, true
end

-- Deploys the definitions (mv.apply: save, create, replace, indexes,
-- grants), printing one step per action. Returns the catalog definitions
-- of the demo's views, in DEMO order.
local function apply_definitions()
  local variant
  local t = clock()
  local p = require("matviews.files").with_scratch_dir(function(scratch)
    local dir
    dir, variant = definitions_dir(scratch)
    return mv.apply({ definitions = dir })
  end)
  if not p.valid or not p.ok then
    local why = #p.errors > 0 and table.concat(p.errors, "\n") or "an action failed"
    for _, a in ipairs(p.actions) do if a.status == "failed" then why = a.line .. ": " .. tostring(a.error) end end
    error(mv.error({ message = why }), 0)
  end
  if #p.actions == 0 then step("apply", "nothing to do: the views are what the files say", clock() - t) end
  for _, a in ipairs(p.actions) do
    if a.action ~= "save" then step(a.action:match("^%S+"), (a.line:gsub("^%s*%S+%s+", "")), a.duration_ms or 0) end
  end
  if variant then step("apply", "(a variant of definitions/: mv_user_accounts has one more column)", 0) end
  local out = {}
  for _, name in ipairs(DEMO) do
    out[#out + 1] = mv.definitions.get(name) or error(mv.error({ message = "definitions/ has no view " .. name }), 0)
  end
  return out
end

-- Runs op ("create"|"refresh") on name as a recorded job (mv.create,
-- mv.refresh); returns the run table; raises when it failed.
local function job(op, name)
  local run = mv[op](name, { row_count_strategy = "exact" })
  if run.status ~= "success" then
    error(mv.error({ message = ("%s %s failed: %s"):format(op, name, tostring(run.error)) }), 0)
  end
  return run
end

-- "; audit passed: min_rows, ..." for a run whose audit ran (meta.audit).
local function audited(run)
  local checks = {}
  for _, c in ipairs(run.meta and run.meta.audit or {}) do checks[#checks + 1] = c.check end
  return #checks > 0 and ("; audit passed: " .. table.concat(checks, ", ")) or ""
end

-- What a failed audit looks like: a refund larger than everything a user
-- paid lands in events (a broken load), the refresh of the audited view
-- name is refused and its old contents stay; the refund is then removed.
local function refused_audit(name)
  local before = mv.query("SELECT count(*) AS n, sum(revenue_cents) AS r FROM " .. name)[1]
  mv.exec([[INSERT INTO events (id, user_id, account_id, kind, amount_cents, occurred_at)
    SELECT -1, a.user_id, a.id, 'refund', -1000000000, now() FROM accounts a ORDER BY a.id LIMIT 1]])
  local ok, run = pcall(mv.refresh, name, { row_count_strategy = "exact" })
  mv.exec("DELETE FROM events WHERE id = -1")
  if not ok then error(run, 0) end
  local after = mv.query("SELECT count(*) AS n, sum(revenue_cents) AS r FROM " .. name)[1]
  if run.status ~= "failed" or after.n ~= before.n or after.r ~= before.r then
    error(mv.error({ message = ("the audit of %s did not refuse a negative revenue (run %s)"):format(name, run.status) }), 0)
  end
  step("audit", ("%s: a -10,000,000.00 refund lands in events; the refresh is refused"):format(name), run.duration_ms)
  print(("%-8s %s"):format("", run.error))
  print(("%-8s %s still has its %d rows; the refund is removed again"):format("", name, after.n))
end

local function main(args)
  local users = seed.users_from_args(args)
  mv.init()
  local s = seed.seed({ users = users })
  local c = seed.counts()
  step("seed", ("%d users, %d accounts, %d events, %d sessions%s"):format(
    s.users, c.accounts, c.events, c.sessions, s.seeded and "" or " (reused)"), s.ms)

  local defs = apply_definitions()
  refused_audit("mv_user_accounts_events")
  for _, d in ipairs(defs) do
    local run = job("refresh", d.name)
    local strategy = run.meta and run.meta.strategy or d.refresh_strategy
    step("refresh", ("%s (%s, %s rows%s)"):format(d.name, strategy, tostring(run.rows_count or "?"),
      audited(run)), run.duration_ms)
  end

  print()
  local cli = require "matviews.cli"
  local has_stats = false
  for _, n in ipairs(cli.commands) do if n == "stats" then has_stats = true end end
  if has_stats then
    print("Run summary (matviews stats)")
    cli.main({ "stats" })
  else
    print("Run summary: `matviews stats` is not in this build")
  end

  print()
  print("Validation (matviews validate): server time of the SQL vs a full read of the view")
  local validate = require "matviews.validate"
  local v = validate.run({ names = DEMO, iterations = 5, warmup = 1 })
  io.write(validate.render(v.results))
  print()
  local page = root .. "/report.html"
  if cli.main({ "report", "--html", page }) ~= 0 then os.exit(1) end
  if page:sub(1, 1) ~= "/" then page = mv.core.sys.getcwd() .. "/" .. page:gsub("^%./", "") end
  print(("report: %s"):format(page))
  print(("demo finished in %.1f s"):format((clock() - started) / 1000))
  if v.mismatches > 0 then os.exit(1) end
end

main({ ... })
