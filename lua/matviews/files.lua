-- Whole-file reads for the Lua side: the one place that opens a file to
-- read it (or to see that it is there) and closes it (configuration, definitions, migrations,
-- and the output files of child processes).
local M = {}

-- The bytes of path, or nil and io.open's message.
function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end

-- True when path can be opened for reading (a file that is there).
function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The bytes of path ("" when it cannot be read), then removes the file.
function M.take(path)
  local s = M.read(path) or ""
  os.remove(path)
  return s
end

return M
