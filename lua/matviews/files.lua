-- Whole-file reads for the Lua side: the one place that opens a file to
-- read it (or to see that it is there) and closes it (configuration,
-- definitions, migrations), and private scratch directories.
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

-- Calls fn(dir) with a new private scratch directory (core.sys.mkdtemp:
-- mode 0700, a name nobody can guess or create first) and removes it and
-- the files fn left in it however fn ends (an error, an interrupt), then
-- returns fn's results or raises its error.
function M.with_scratch_dir(fn)
  local sys = require("matviews.core").sys
  local dir = assert(sys.mkdtemp())
  local r = table.pack(pcall(fn, dir))
  for _, name in ipairs(sys.listdir(dir) or {}) do os.remove(dir .. "/" .. name) end
  os.remove(dir)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

return M
