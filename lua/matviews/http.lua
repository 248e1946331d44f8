-- A tiny, safe HTTP/1.x server for `matviews metrics --listen`: one
-- connection at a time, GET (and HEAD) only, a request of at most 8 KiB of
-- headers read within 5 seconds, no body accepted, `Connection: close`
-- after each response. Binds 127.0.0.1 unless the address names a host.
local net = require("matviews.core").net

local M = {}

M.MAX_REQUEST = 8192   -- bytes of request line + headers
M.TIMEOUT_MS = 5000    -- to read a request, and per write

-- "9187" -> "127.0.0.1", "9187"; "host:9187"; "[::1]:9187". nil, message
-- on anything else.
function M.parse_address(addr)
  local host, port = addr:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = addr:match("^([%w%.%-]+):(%d+)$") end
  if not host and addr:match("^%d+$") then host, port = "127.0.0.1", addr end
  local n = port and tonumber(port)
  if not n or n < 0 or n > 65535 then
    return nil, ("invalid --listen %q: use PORT or HOST:PORT (e.g. 127.0.0.1:9187)"):format(addr)
  end
  return host, port
end

local REASONS = { [200] = "OK", [400] = "Bad Request", [404] = "Not Found", [405] = "Method Not Allowed",
  [408] = "Request Timeout", [431] = "Request Header Fields Too Large", [500] = "Internal Server Error" }

-- The response bytes: status, headers, body (no body for HEAD).
local function response(code, body, ctype, head, extra)
  local h = { ("HTTP/1.1 %d %s"):format(code, REASONS[code]),
    "Content-Type: " .. (ctype or "text/plain; charset=utf-8"),
    "Content-Length: " .. #body, "Connection: close", "Cache-Control: no-store" }
  if extra then h[#h + 1] = extra end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. (head and "" or body)
end

-- Reads the request head from fd: the head text, or nil and the status
-- code to answer (408 timeout, 431 too large, 400 closed early).
local function read_head(fd, deadline)
  local sys = require("matviews.core").sys
  local buf = ""
  while true do
    local left = deadline - sys.monotonic_ms()
    if left <= 0 then return nil, 408 end
    local chunk, err = net.recv(fd, M.MAX_REQUEST + 1 - #buf, math.floor(left))
    if not chunk then return nil, err == "timeout" and 408 or 400 end
    if chunk == "" then return nil, 400 end
    buf = buf .. chunk
    local stop = buf:find("\r?\n\r?\n")
    if stop then return buf:sub(1, stop) end
    if #buf > M.MAX_REQUEST then return nil, 431 end
  end
end

-- Answers one request on client fd: handler() gives the metrics text.
-- Returns the status code it answered (for the log line).
function M.answer(fd, handler)
  local sys = require("matviews.core").sys
  local head, code = read_head(fd, sys.monotonic_ms() + M.TIMEOUT_MS)
  local method, path
  if head then
    method, path = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n")
    if not method then code = 400 end
  end
  local out
  if code then
    out = response(code, REASONS[code] .. "\n")
  elseif method ~= "GET" and method ~= "HEAD" then
    code, out = 405, response(405, "only GET\n", nil, false, "Allow: GET, HEAD")
  elseif path:gsub("%?.*$", "") ~= "/metrics" then
    code, out = 404, response(404, "matviews: the metrics are at /metrics\n", nil, method == "HEAD")
  else
    local ok, text = pcall(handler)
    if ok then code, out = 200, response(200, text, "text/plain; version=0.0.4; charset=utf-8", method == "HEAD")
    else code, out = 500, response(500, "matviews: " .. tostring(text) .. "\n", nil, method == "HEAD") end
  end
  net.send(fd, out, M.TIMEOUT_MS)
  -- a lingering close: what the client still sends (a body we do not read)
  -- is drained for a moment, so closing does not reset the connection
  -- before the client has read the response
  net.shutdown(fd)
  local drained = 0
  repeat
    local chunk = net.recv(fd, 65536, 100)
    drained = drained + (chunk and #chunk or 0)
  until not chunk or chunk == "" or drained > 1048576
  return code, method, path
end

-- Serves handler at /metrics on addr until interrupted. Returns an exit code.
-- opts.timeout_ms replaces M.TIMEOUT_MS.
function M.serve(addr, handler, ctx, opts)
  if opts and opts.timeout_ms then M.TIMEOUT_MS = opts.timeout_ms end
  local host, port = M.parse_address(addr)
  if not host then require("matviews.targets").usage(port) end
  local fd, bound = net.listen(host, port)
  if not fd then require("matviews").error(("--listen %s: %s"):format(addr, bound)) end
  port = tostring(bound)
  io.stderr:write(("matviews metrics: serving http://%s/metrics\n"):format(host:find(":") and ("[" .. host .. "]:" .. port) or (host .. ":" .. port)))
  io.stderr:flush()
  local ok, e = pcall(function()
    while true do
      local c = net.accept(fd, 1000)
      if c then
        local aok, code, method, path = pcall(M.answer, c, handler)
        net.close(c)
        if ctx and ctx.options.verbose then
          io.stderr:write(("%s %s -> %s\n"):format(tostring(method), tostring(path), aok and tostring(code) or tostring(code)))
        end
      end
    end
  end)
  net.close(fd)
  if not ok then error(e, 0) end
  return 0
end

return M
