-- `matviews reconcile`: finalises orphaned runs (left `running` by a process
-- that died: their recorder backend is gone) as failed with an explanatory
-- error, fails queue jobs whose worker died, and drops the relations an
-- interrupted swap left. `worker` does the same when it starts.
local M = {
  name = "reconcile",
  summary = "Finalise orphaned runs as failed and drop what interrupted swaps left.",
}

function M.run(_, ctx)
  local rec = ctx.mv.reconcile()
  require("matviews.output").emit(ctx, rec, function(d)
    for _, r in ipairs(d.runs) do print(("%s run %d of %s: %s"):format(r.op, r.id, r.view, r.error)) end
    for _, j in ipairs(d.jobs) do print(("job %d %s %s: %s"):format(j.job_id, j.op, j.view, j.error)) end
    for _, name in ipairs(d.dropped) do print("dropped " .. name) end
    for _, s in ipairs(d.skipped) do print(("skipped %s: %s"):format(s.relation, s.error)) end
    print(("reconciled %d run(s), %d job(s); dropped %d relation(s)"):format(#d.runs, #d.jobs, #d.dropped)
      .. (#d.skipped > 0 and ("; skipped %d (drop them by hand)"):format(#d.skipped) or ""))
  end)
  return 0
end

return M
