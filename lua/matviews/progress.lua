-- Progress of a command over several views. On a terminal (stderr) a status
-- line "[done/total] verb view  elapsed" is redrawn in place with \r while
-- each view runs; each finished view gets a plain result line on stdout
-- (unless --json), so a log or a pipe sees one line per view.
local M = {}
M.__index = M

local sys = require("matviews.core").sys

-- "850ms", "12.3s", "2m05s".
function M.format_elapsed(ms)
  if ms < 1000 then return ("%dms"):format(math.floor(ms)) end
  local s = ms / 1000
  if s < 60 then return ("%.1fs"):format(s) end
  return ("%dm%02ds"):format(math.floor(s / 60), math.floor(s % 60))
end

-- new{ total = n, verb = "refreshing", quiet = bool (no result lines),
--      tty = bool (default: stderr is a terminal) }
function M.new(o)
  local p = setmetatable({ total = o.total, verb = o.verb, quiet = o.quiet, done = 0,
    t0 = sys.monotonic_ms() }, M)
  if o.tty == nil then p.tty = sys.isatty(2) else p.tty = o.tty end
  return p
end

-- Shows that view is starting (terminal only).
function M:start(view)
  if not self.tty then return end
  io.stderr:write(("\r\27[K[%d/%d] %s %s  %s elapsed"):format(self.done, self.total, self.verb, view,
    M.format_elapsed(sys.monotonic_ms() - self.t0)))
  io.stderr:flush()
end

-- Records that a view finished; text is its result line.
function M:finish(text)
  self.done = self.done + 1
  if self.tty then io.stderr:write("\r\27[K"); io.stderr:flush() end
  if not self.quiet then
    io.stdout:write(("[%d/%d] %s\n"):format(self.done, self.total, text))
    io.stdout:flush()
  end
end

-- Ends the progress: a closing summary on the terminal.
function M:close(failed)
  if not self.tty then return end
  io.stderr:write(("%d/%d done, %d failed, %s\n"):format(self.done, self.total, failed,
    M.format_elapsed(sys.monotonic_ms() - self.t0)))
end

return M
