-- Long-running loops (worker, scheduler) keep going across a lost
-- connection: a server restart, pg_terminate_backend, a network cut. The
-- loss is said once on stderr; the default connection is reopened with
-- backoff (100 ms doubling to 5 s) until it works or a SIGINT/SIGTERM
-- arrives.
local M = {}
local error_message = require("matviews.core").error_message -- the text of a caught error

local function message(err)
  return (error_message(err):gsub("\n.*", ""))
end

-- True when err came with a default connection that is gone (an interrupt
-- is never a lost connection).
function M.lost(mv, err)
  if message(err):match("interrupted!$") then return false end
  local ok, conn = pcall(mv.conn)
  return not ok or not conn:is_connected()
end

-- Reopens the default connection for `who` ("worker"), then calls after()
-- (it must succeed too, e.g. failing the jobs of the lost session). Returns
-- false when a signal stopped the wait.
function M.reopen(mv, who, err, after)
  local sys = mv.core.sys
  io.stderr:write(("matviews: %s lost its connection (%s); reconnecting\n"):format(who, message(err)))
  pcall(function() mv.conn():close() end)
  local wait = 100
  while not sys.stop_signal() do
    if pcall(mv.conn) and (after == nil or pcall(after)) then
      io.stderr:write(("matviews: %s reconnected\n"):format(who))
      return true
    end
    sys.sleep_ms(wait)
    wait = math.min(wait * 2, 5000)
  end
  return false
end

-- Runs step() protected: its errors propagate, except a lost connection,
-- which is reopened (M.reopen). Returns true, step's result, or false when
-- a signal stopped the reconnecting.
function M.step(mv, who, step, after)
  local ok, r = pcall(step)
  if ok then return true, r end
  if not M.lost(mv, r) then error(r, 0) end
  return M.reopen(mv, who, r, after), nil
end

return M
