-- contrib/*.service: the systemd units of the scheduler and the worker
-- restart on failure, take the DSN from an EnvironmentFile (never the
-- command line), run a command line the host accepts, and pass
-- `systemd-analyze verify` when systemd is installed.
local H = require "spec.helper"

local UNITS = { ["matviews-scheduler.service"] = "scheduler", ["matviews-worker.service"] = "worker" }

describe("contrib systemd units", function()
  for unit, command in pairs(UNITS) do
    it(unit .. " restarts on failure and reads the DSN from an EnvironmentFile", function()
      local text = assert(require("matviews.files").read("contrib/" .. unit))
      assert.truthy(text:find("\nRestart=on-failure\n", 1, true))
      assert.truthy(text:find("\nEnvironmentFile=/etc/matviews/matviews.env\n", 1, true))
      local exec = text:match("\nExecStart=(%S+ [^\n]*)\n")
      assert.matches("^/usr/local/bin/matviews " .. command, exec)
      assert.is_nil(exec:find("dsn", 1, true))
      -- the host accepts the command line (its arguments, then --help)
      local args = exec:gsub("^%S+ ", "")
      local r = H.mv(args .. " --help")
      assert.are.equal(0, r.code, r.err)
      assert.matches("^Usage: matviews " .. command, r.out)
      if os.execute("command -v systemd-analyze >/dev/null 2>&1") then
        local bin = H.sh("readlink -f " .. H.q(H.bin)).out:gsub("%s+$", "")
        local copy = H.tmpfile(".service")
        H.write(copy, (text:gsub("ExecStart=%S+", "ExecStart=" .. bin)))
        local v = H.sh("systemd-analyze verify " .. H.q(copy))
        assert.are.equal(0, v.code, v.out .. v.err)
      end
    end)
  end
end)
