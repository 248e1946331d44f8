-- `matviews db start|stop|status|url`: the embedded default cluster.
local M = {
  name = "db",
  summary = "Manage the embedded PostgreSQL cluster (start, stop, status, url).",
}

function M.configure(cmd)
  cmd:argument("action", "start, stop, status or url."):choices({ "start", "stop", "status", "url" })
end

function M.run(args, ctx)
  local mv, json = ctx.mv, ctx.options.json
  local action = args.action
  if action == "start" then mv.db.start()
  elseif action == "stop" then
    local was = mv.db.stop()
    if not json then print(was and "stopped" or "not running") end
    if json then io.write(mv.json.encode({ stopped = was }), "\n") end
    return 0
  end
  local st = mv.db.status()
  if json then
    io.write(mv.json.encode(st), "\n")
  elseif action == "url" then
    print(st.url)
  else
    print(("%s  data: %s  socket: %s"):format(st.running and "running" or "stopped", st.data_dir, st.socket_dir))
  end
  return 0
end

return M
