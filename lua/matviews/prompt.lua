-- The confirmation before destructive commands: `Proceed? [y/N]` on stderr
-- (stdout stays clean for --json), answered on stdin. --yes or YES=1 skip it;
-- an empty answer or EOF is a no.
local M = {}

-- Returns true to proceed. message is printed before the question.
function M.confirm(ctx, message)
  if ctx.options.yes or os.getenv("YES") == "1" then return true end
  if message then io.stderr:write(message, "\n") end
  io.stderr:write("Proceed? [y/N] ")
  io.stderr:flush()
  local answer = io.stdin:read("l")
  if answer == nil then io.stderr:write("\n") end
  answer = (answer or ""):lower():gsub("^%s+", ""):gsub("%s+$", "")
  return answer == "y" or answer == "yes"
end

M.ABORTED = 3 -- the exit code of a declined prompt

return M
