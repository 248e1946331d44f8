-- The demo (`make demo`): on the default database (the embedded cluster when
-- nothing else is set), seeds users, accounts, events and sessions, applies
-- the four definitions of definitions/, creates the views with their unique
-- indexes, refreshes each with its strategy (regular, concurrent and swap are
-- all used), then prints the run summary and the validation table, and
-- writes the run history as report.html (`matviews report --html`).
-- Run again, it reuses the data and the views that exist.
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

-- Reads the definition files and saves them into the catalog as `matviews
-- apply` does (matviews.dsl + matviews.apply). Returns the definitions
-- (name, refresh_strategy, ...) of the demo's views, in DEMO order.
local function apply_definitions()
  local dsl, apply = require "matviews.dsl", require "matviews.apply"
  local defs, errs = dsl.load_dir(root .. "/definitions")
  if not defs then error(mv.error({ message = table.concat(errs, "\n") }), 0) end
  local r = apply.apply(defs)
  local by_name, out = {}, {}
  for _, d in ipairs(defs) do by_name[d.name] = dsl.to_catalog(d) end
  for _, name in ipairs(DEMO) do
    out[#out + 1] = by_name[name] or error(mv.error({ message = "definitions/ has no view " .. name }), 0)
  end
  return out, r
end

-- True when the materialized view exists.
local function view_exists(name)
  return mv.query("SELECT to_regclass($1) IS NOT NULL AS ok", mv.conn():quote_ident(name))[1].ok
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

local function main(args)
  local users = seed.users_from_args(args)
  mv.init()
  local s = seed.seed({ users = users })
  local c = seed.counts()
  step("seed", ("%d users, %d accounts, %d events, %d sessions%s"):format(
    s.users, c.accounts, c.events, c.sessions, s.seeded and "" or " (reused)"), s.ms)

  local t = clock()
  local defs, applied = apply_definitions()
  local c2 = applied.counts
  step("apply", ("%d definitions: %d inserted, %d updated, %d unchanged"):format(#defs,
    c2.inserted, c2.updated, c2.unchanged), clock() - t)

  for _, d in ipairs(defs) do
    if view_exists(d.name) then
      step("create", d.name .. " (exists)", 0)
    else
      local run = job("create", d.name)
      step("create", d.name, run.duration_ms)
    end
  end
  for _, d in ipairs(defs) do
    local run = job("refresh", d.name)
    local strategy = run.meta and run.meta.strategy or d.refresh_strategy
    step("refresh", ("%s (%s, %s rows)"):format(d.name, strategy, tostring(run.rows_count or "?")), run.duration_ms)
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
