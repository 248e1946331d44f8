-- The confirmation before destructive commands: `Proceed? [y/N]` on stderr
-- (stdout stays clean for --json), answered on stdin. --yes or
-- MATVIEWS_YES=1 skip it; an empty answer or EOF is a no. Without a terminal
-- on stdin there is nobody to ask: the command refuses at once (exit 3), so a
-- cron job that forgot --yes fails loudly instead of doing nothing quietly.
local M = {}

M.ABORTED = 3 -- the exit code of a declined or refused prompt
M.ENV_YES = "MATVIEWS_YES"
M.REFUSED = "refusing without --yes: no terminal to ask on"

-- True when --yes or MATVIEWS_YES=1 answered in advance.
function M.answered(ctx)
  return ctx.options.yes or os.getenv(M.ENV_YES) == "1"
end

-- True when the question cannot be asked: not answered and stdin is no terminal.
function M.must_refuse(ctx)
  return not M.answered(ctx) and not require("matviews.core").sys.isatty(0)
end

-- Returns true to proceed. message is printed before the question. Without
-- a terminal, writes the refusal and returns false without asking.
function M.confirm(ctx, message)
  if M.answered(ctx) then return true end
  if M.must_refuse(ctx) then
    io.stderr:write(M.REFUSED, "\n")
    return false
  end
  if message then io.stderr:write(message, "\n") end
  io.stderr:write("Proceed? [y/N] ")
  io.stderr:flush()
  local answer = io.stdin:read("l")
  if answer == nil then io.stderr:write("\n") end
  answer = (answer or ""):lower():gsub("^%s+", ""):gsub("%s+$", "")
  return answer == "y" or answer == "yes"
end

return M
