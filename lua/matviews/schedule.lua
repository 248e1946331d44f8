-- Scheduling: each definition with a `schedule_cron` is refreshed at its
-- cron's fire times, read in the configured zone (config.time_zone, UTC by
-- default; src/cron.c uses the system zone database). The worker calls
-- tick() on each turn; tick claims the latest due slot of each definition
-- in mat_view_schedule_slots (unique per definition and slot, so exactly one
-- worker wins however many run) and enqueues its refresh in the same
-- transaction. Slots missed while no worker ran collapse into one: only the
-- latest fire time after the last claimed slot (or after the definition was
-- created) is claimed. "Now" is the database's clock, shared by every worker.
local M = {}

local KEEP_DAYS = 7 -- claimed slots older than this (before the last one) are removed

local SCHEDULED = [[
SELECT d.id, ]] .. require("matviews.definitions").label_sql("d") .. [[ AS name, d.schedule_cron,
       d.schema_name, d.name AS view_name, d.options->>'strategy' AS strategy,
       floor(extract(epoch FROM d.created_at))::bigint AS created,
       (SELECT floor(extract(epoch FROM max(s.slot_time)))::bigint
          FROM mat_view_schedule_slots s WHERE s.mat_view_definition_id = d.id) AS last_slot
FROM mat_view_definitions d
WHERE d.deleted_at IS NULL
ORDER BY d.name, d.schema_name]]

local CLAIM = [[
INSERT INTO mat_view_schedule_slots
  (mat_view_definition_id, slot_time, schedule_cron, time_zone, hostname, process_pid)
VALUES ($1, to_timestamp($2), $3, $4, $5, $6)
ON CONFLICT ON CONSTRAINT mat_view_schedule_slots_unique DO NOTHING
RETURNING 1 AS claimed]]

-- The zone schedules are read in; raises when the system does not know it.
function M.zone()
  local mv = require "matviews"
  local tz = mv.config().time_zone
  if tz == nil or tz == "" then tz = "UTC" end
  if not mv.core.cron_zone_ok(tz) then
    mv.error(("unknown time zone %q (config time_zone)"):format(tz))
  end
  return tz
end

-- The database's current time in whole UTC seconds.
function M.db_now(conn)
  return conn:query("SELECT floor(extract(epoch FROM now()))::bigint AS t")[1].t
end

local function is_null(v) return v == nil or v == require("matviews").null end

-- The scheduled definitions with their due slot at `now`: rows of
-- { id, name, schedule_cron, last_slot, due (epoch or nil), next_run, error,
-- unclaimed_since }. unclaimed_since is the fire time two periods back when
-- no slot from it on was claimed (and the definition existed): nothing is
-- running the schedules.
function M.plan(now, conn)
  local mv = require "matviews"
  conn = conn or mv.conn()
  now = now or M.db_now(conn)
  local tz, out = M.zone(), {}
  for _, d in ipairs(conn:query(SCHEDULED)) do
    local r = { id = d.id, name = d.name, last_slot = not is_null(d.last_slot) and d.last_slot or nil }
    if not is_null(d.schedule_cron) and d.schedule_cron ~= "" then
      r.schedule_cron = d.schedule_cron
      local prev, err = mv.core.cron_prev(d.schedule_cron, now, tz)
      r.next_run, err = mv.core.cron_next(d.schedule_cron, now, tz)
      r.error = err
      if prev and prev > (r.last_slot or d.created) then r.due = prev end
      local prev2 = prev and mv.core.cron_prev(d.schedule_cron, prev - 1, tz)
      if prev2 and prev2 >= d.created and (r.last_slot or -1) < prev2 then r.unclaimed_since = prev2 end
      if not r.error and not is_null(d.strategy) then -- a strategy no file declares: reported, never queued
        local ok, why = require("matviews.strategies").check({ schema_name = d.schema_name, name = d.view_name,
          label = d.name }, d.strategy)
        if not ok then r.error = why end
      end
    end
    out[#out + 1] = r
  end
  return out, now, tz
end

-- The default enqueue: a refresh job on the queue (matviews.queue), in the
-- claiming transaction's session, so the job exists only if the claim commits.
local function enqueue_refresh(def, _, conn)
  return require("matviews.queue").enqueue("refresh", def.id, { conn = conn })
end

-- Claims the slot of def and, when this call won it, enqueues the refresh in
-- the same transaction. Returns the enqueued job (a table) or nil.
local function claim(conn, def, slot, tz, enqueue)
  local mv = require "matviews"
  return mv.transaction(function(c)
    local won = c:query(CLAIM, def.id, slot, def.schedule_cron, tz,
      mv.core.sys.hostname(), mv.core.sys.getpid())
    if #won == 0 then return nil end
    local job = enqueue(def, slot, c)
    c:exec([[UPDATE mat_view_schedule_slots SET job = $3
             WHERE mat_view_definition_id = $1 AND slot_time = to_timestamp($2)]],
      def.id, slot, type(job) == "table" and job or { value = tostring(job) })
    c:exec([[DELETE FROM mat_view_schedule_slots WHERE mat_view_definition_id = $1
             AND slot_time < to_timestamp($2) - make_interval(days => $3)]], def.id, slot, KEEP_DAYS)
    return job or true
  end, conn)
end

-- One scheduling turn at `now` (UTC seconds; default the database's now()).
-- opts.enqueue(def, slot, conn) replaces the queued refresh; opts.conn the
-- connection. Returns { now, time_zone, claimed = { {name, slot, job} },
-- errors = { {name, error} } }: a bad cron expression, or a strategy no file
-- declares (matviews.strategies.check: file and line), is reported, not
-- raised, and the view is not queued.
function M.tick(now, opts)
  local mv = require "matviews"
  opts = opts or {}
  local conn = opts.conn or mv.conn()
  local plan, at, tz = M.plan(now, conn)
  local result = { now = at, time_zone = tz, claimed = {}, errors = {} }
  for _, def in ipairs(plan) do
    if def.error then
      result.errors[#result.errors + 1] = { name = def.name, error = def.error }
    elseif def.due then
      local job = claim(conn, def, def.due, tz, opts.enqueue or enqueue_refresh)
      if job then
        result.claimed[#result.claimed + 1] = { name = def.name, slot = def.due, job = job }
      end
    end
  end
  return result
end

-- Reports one tick's result r: prints what it queued (text mode) or adds it
-- to doc.scheduled (--json), and each distinct error once (said: the
-- errors already said) on stderr.
function M.report(ctx, doc, r, said)
  doc.scheduled = doc.scheduled or {}
  for _, c in ipairs(r.claimed) do
    local entry = { view = c.name, slot = require("matviews.format").iso_epochs(require("matviews").conn(), { c.slot })[1],
      job_id = type(c.job) == "table" and c.job.job_id or nil }
    if ctx.options.json then doc.scheduled[#doc.scheduled + 1] = entry end -- a long run keeps none
    if not ctx.options.json then
      print(("scheduled refresh of %s for %s (job %s)"):format(entry.view, entry.slot, tostring(entry.job_id)))
      io.stdout:flush()
    end
  end
  for _, e in ipairs(r.errors) do
    local line = e.name .. ": " .. e.error
    if not said[line] then said[line] = true; io.stderr:write("matviews: schedule of ", line, "\n") end
  end
end

-- For the worker loop: a function that runs tick() at most once a second
-- and reports it (M.report).
function M.ticker(ctx, doc)
  local sys = require("matviews").core.sys
  local last, said = nil, {}
  doc.scheduled = doc.scheduled or {}
  return function()
    local now = sys.monotonic_ms()
    if last and now - last < 1000 then return end
    last = now
    M.report(ctx, doc, M.tick(), said)
  end
end

return M
