-- `matviews db start|stop|status|url|destroy`: the embedded default cluster.
-- destroy stops it and deletes its files (asks first; refuses while another
-- process is connected to it).
local M = {
  name = "db",
  summary = "Manage the embedded PostgreSQL cluster (start, stop, status, url, destroy).",
}

function M.configure(cmd)
  cmd:argument("action", "start, stop, status, url or destroy."):choices({ "start", "stop", "status", "url", "destroy" })
  cmd:epilog("The embedded cluster keeps running after a command exits, so the next one starts fast: "
    .. "`matviews db stop` stops it, `matviews db destroy` deletes it with every database in it.")
end

-- The directory the cluster's files are in (data_dir without /pgdata).
local function base_of(st) return (st.data_dir:match("^(.*)/pgdata$")) or st.data_dir end

-- Bytes used by the files under dir (du), or nil when it does not exist.
local function dir_bytes(dir)
  if not require("matviews.files").exists(dir) then return nil end
  local p = io.popen("du -sk '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local kb = p:read("n")
  p:close()
  return kb and math.tointeger(kb * 1024)
end

local function size_text(b) return require("matviews.format").bytes(b) or "none" end

-- The other client connections to the running cluster: { { pid, application } }.
local function other_clients(st)
  local conn <close> = require("matviews.core").connect(st.conninfo)
  return conn:query([[SELECT pid, coalesce(nullif(application_name, ''), '?') AS application FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid]])
end

-- `db destroy`: refuse while in use, ask, stop, delete the cluster's files.
local function destroy(ctx)
  local mv, prompt = ctx.mv, require "matviews.prompt"
  local st = mv.db.status()
  local base = base_of(st)
  local bytes = dir_bytes(base)
  if not bytes then
    io.write(("no embedded cluster in %s: nothing to destroy\n"):format(base))
    return 0
  end
  if st.running then
    local others = other_clients(st)
    if #others > 0 then
      local list = {}
      for i, c in ipairs(others) do list[i] = ("pid %d (%s)"):format(c.pid, c.application) end
      mv.error({ message = ("the embedded cluster in %s is in use by %d other connection%s: %s; "
        .. "stop those processes first"):format(base, #others, #others == 1 and "" or "s", table.concat(list, ", ")) })
    end
  end
  if not prompt.confirm(ctx, ("db destroy deletes the embedded cluster in %s (%s) with every database in it")
      :format(base, size_text(bytes))) then
    if not prompt.must_refuse(ctx) then io.stderr:write("aborted; nothing deleted\n") end
    return prompt.ABORTED
  end
  if st.running then mv.db.stop() end
  -- only what the cluster made: MATVIEWS_HOME may be a directory with other files
  local q = function(p) return "'" .. p:gsub("'", "'\\''") .. "'" end
  local ok = os.execute(("rm -rf -- %s && rm -f -- %s %s && { rmdir -- %s 2>/dev/null || true; }"):format(
    q(st.data_dir), q(base .. "/embed.lock"), q(base .. "/embed.log"), q(base)))
  if not ok then mv.error({ message = "could not delete " .. st.data_dir }) end
  io.write(("destroyed the embedded cluster in %s (%s freed)\n"):format(base, size_text(bytes)))
  return 0
end

function M.run(args, ctx)
  local mv, json = ctx.mv, ctx.options.json
  local action = args.action
  if action == "destroy" then return destroy(ctx)
  elseif action == "start" then mv.db.start()
  elseif action == "stop" then
    local was = mv.db.stop()
    if not json then print(was and "stopped" or "not running") end
    if json then io.write(mv.json.encode({ stopped = was }), "\n") end
    return 0
  end
  local st = mv.db.status()
  st.size_bytes = dir_bytes(base_of(st))
  if json then
    io.write(mv.json.encode(st), "\n")
  elseif action == "url" then
    print(st.url)
  else
    print(("%s  data: %s  socket: %s  size: %s"):format(st.running and "running" or "stopped", st.data_dir,
      st.socket_dir, size_text(st.size_bytes)))
  end
  return 0
end

return M
