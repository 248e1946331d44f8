-- Child host processes, for parallel refresh and `worker --concurrency`:
-- the running executable itself (sys.exe_path: no shell, no PATH lookup,
-- no quoting), the parent's --config, and the parent's connection string in
-- the child's environment (MATVIEWS_CHILD_DSN, read back by
-- mv.default_dsn), so that a password never shows on a command line.
local M = {}

M.DSN_VAR = "MATVIEWS_CHILD_DSN"

-- Starts `matviews [--config FILE] ARGS...`. opts: dsn (else the one this
-- process was given: mv.use's conninfo or --dsn), env (more variables),
-- socket and group (see sys.spawn). stdin is /dev/null and stdout and
-- stderr are inherited, unless socket. Returns the pid (and the socket);
-- raises on failure.
function M.spawn(args, opts)
  opts = opts or {}
  local mv = require "matviews"
  local sys = mv.core.sys
  local argv = { sys.exe_path() }
  if mv.options.config then argv[#argv + 1] = "--config"; argv[#argv + 1] = mv.options.config end
  table.move(args, 1, #args, #argv + 1, argv)
  local env, dsn = {}, opts.dsn or mv.used_dsn or mv.options.dsn
  for k, v in pairs(opts.env or {}) do env[k] = v end
  if dsn then env[M.DSN_VAR] = dsn end
  local pid, err = sys.spawn(argv, { env = env, socket = opts.socket, group = opts.group })
  if not pid then mv.error(err) end
  return pid, err
end

return M
