-- Progress of a command over several views. On a terminal (stderr) a status
-- line "[done/total] verb view  12.3s elapsed, ETA 8s" is redrawn in place
-- with \r once a second while each view runs (core.sys.ticker_*: the C
-- side redraws it from the query's poll loop), the ETA counting down from
-- the median duration of the view's last successful runs of the operation;
-- each finished view gets a plain result line on stdout (unless --json), so
-- a log or a pipe sees one line per view.
local M = {}
M.__index = M

local sys = require("matviews.core").sys
local vocab = require "matviews.vocab"

-- "850ms", "12.3s", "2m05s".
function M.format_elapsed(ms)
  if ms < 1000 then return ("%dms"):format(math.floor(ms)) end
  local s = ms / 1000
  if s < 60 then return ("%.1fs"):format(s) end
  return ("%dm%02ds"):format(math.floor(s / 60), math.floor(s % 60))
end

local MEDIAN_SQL = vocab.sql[[SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)::bigint AS m
      FROM (SELECT duration_ms FROM %s WHERE mat_view_definition_id = $1 AND status = {success} AND duration_ms IS NOT NULL
            ORDER BY created_at DESC, id DESC LIMIT 20) x]]

-- The median duration (ms) of the last 20 successful runs of op of
-- definition id; nil when there is none (or it cannot be read).
function M.median_ms(op, id)
  local tbl = vocab.RUN_TABLES[op]
  if not tbl or id == nil then return nil end
  local ok, rows = pcall(function()
    return require("matviews").conn():query(MEDIAN_SQL:format(tbl), id)
  end)
  if ok and rows[1] and math.type(rows[1].m) == "integer" then return rows[1].m end
  return nil
end

-- new{ total = n, verb = "refreshing", quiet = bool (no result lines),
--      tty = bool (default: stderr is a terminal), op = "refresh" (whose
--      recorded durations give the ETA) }
function M.new(o)
  local p = setmetatable({ total = o.total, verb = o.verb, quiet = o.quiet, done = 0, op = o.op,
    t0 = sys.monotonic_ms() }, M)
  if o.tty == nil then p.tty = sys.isatty(2) else p.tty = o.tty end
  return p
end

-- Shows that view (definition id, for the ETA) is starting, and keeps the
-- line ticking while it runs (terminal only).
function M:start(view, id)
  if not self.tty then return end
  sys.ticker_start(("[%d/%d] %s %s"):format(self.done, self.total, self.verb, view), M.median_ms(self.op, id))
end

-- Shows the views running at once (parallel refresh), text naming them;
-- elapsed counts from the command's start, and eta_ms (nil: none) is the
-- expected end counted from there (terminal only).
function M:running(text, eta_ms)
  if not self.tty then return end
  sys.ticker_start(("[%d/%d] %s %s"):format(self.done, self.total, self.verb, text),
    eta_ms and math.floor(eta_ms), math.floor(sys.monotonic_ms() - self.t0))
end

-- Records that a view finished; text is its result line.
function M:finish(text)
  self.done = self.done + 1
  if self.tty then sys.ticker_stop(); io.stderr:write("\r\27[K"); io.stderr:flush() end
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
