-- The number of statements one recorded refresh sends to the server,
-- counted as the server logs them (log_statement = all, for the sessions
-- of one host process only, through PGOPTIONS): one run between two marker
-- statements sent on a third connection, after a first run has opened the
-- connections, as `refresh --all` runs them one after another. The bound
-- (issue 12: at most 8) cannot creep back unnoticed.
local H = require "spec.helper"
local mv = require "matviews"
local P = require "spec.proc_helper"

local BOUND = 8

-- The statement lines the server logged between the two marker lines.
local function statements_between(log, a, b)
  local n, inside = 0, false
  for line in log:gmatch("[^\n]+") do
    if line:find(a, 1, true) then inside = true
    elseif line:find(b, 1, true) then break
    elseif inside and (line:find("LOG:  statement: ", 1, true) or line:find("LOG:  execute ", 1, true)) then
      n = n + 1
    end
  end
  return n
end

local function server_log()
  local f = assert(io.open(H.tmp .. "/server.log"))
  local s = f:read("a")
  f:close()
  return s
end

describe("a recorded refresh", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE st_src AS SELECT g AS id FROM generate_series(1, 10) g")
    for _, s in ipairs({ "regular", "concurrent" }) do
      mv.definitions.save({ name = "st_" .. s, sql = "SELECT id FROM st_src", refresh_strategy = s, unique_index_columns = { "id" } })
      assert.are.equal("success", mv.create("st_" .. s).status)
    end
  end)

  for _, s in ipairs({ "regular", "concurrent" }) do
    it(("sends at most %d statements (%s)"):format(BOUND, s), function()
      local tag = ("mark_%s_%d"):format(s, os.time())
      local r = H.mv("-e " .. H.q(([[
        local marks = mv.connect("")
        assert(mv.refresh("st_%s").status == "success")
        marks:query("SELECT 'begin_%s'")
        assert(mv.refresh("st_%s").status == "success")
        marks:query("SELECT 'end_%s'")]]):format(s, tag, s, tag)), { env = { PGOPTIONS = "-c log_statement=all" } })
      assert.are.equal(0, r.code, r.err)
      local n = P.wait_for("the end marker in the server log", function()
        local log = server_log()
        if not log:find("end_" .. tag, 1, true) then return nil end
        return statements_between(log, "begin_" .. tag, "end_" .. tag)
      end)
      assert.is_true(n > 0 and n <= BOUND, ("%d statements"):format(n))
    end)
  end
end)
