-- docs/configuration.md is the reference of every matviews.lua key and
-- every per-definition key: this spec reads its two tables and checks them
-- against the code (matviews.config, matviews.dsl), so it cannot drift: no
-- key missing, none invented, each configuration default the code's.
local H = require "spec.helper"
local mv = require "matviews"

-- The rows of the first table after the heading that starts with `heading`:
-- { key = { type, default, meaning } } and the keys in order.
local function table_after(text, heading)
  local at = assert(text:find("\n## " .. heading, 1, true), "no section " .. heading)
  local rows, order, started = {}, {}, false
  for line in text:sub(at + 1):gmatch("([^\n]*)\n") do
    if line:match("^|") then
      started = true
      local cells = {}
      for cell in line:sub(2):gmatch("%s*(.-)%s*|") do cells[#cells + 1] = cell end
      local key = cells[1]:match("^`([%w_]+)`$")
      if key then
        rows[key] = { type = cells[2], default = cells[3], meaning = cells[4] }
        order[#order + 1] = key
      end
    elseif started then
      break
    end
  end
  return rows, order
end

-- A default as the page writes it: Lua literal syntax, keys sorted.
local function literal(v)
  if v == nil then return "(none)" end
  if type(v) == "string" then return ('"%s"'):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  local keys, parts = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. " = " .. literal(v[k]) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function keys_of(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("docs/configuration.md", function()
  local text = assert(require("matviews.files").read("docs/configuration.md"))

  it("lists every matviews.lua key with the code's default, and no other", function()
    local config = require "matviews.config"
    local rows, order = table_after(text, "`matviews.lua`")
    local documented = {}
    for _, k in ipairs(order) do documented[#documented + 1] = k end
    table.sort(documented)
    assert.are.same(keys_of(config.types), documented)
    for k, row in pairs(rows) do
      assert.are.equal(literal(config.defaults[k]), row.default:gsub("^`(.*)`$", "%1"), "default of " .. k)
      assert.is_true(#row.meaning > 10 and #row.type > 0, "type and meaning of " .. k)
    end
  end)

  it("lists every key a definition may set, in the DSL's order", function()
    local dsl = require "matviews.dsl"
    local rows, order = table_after(text, "Per definition")
    assert.are.same(dsl.KEYS, order)
    for k, row in pairs(rows) do
      assert.is_true(#row.meaning > 10 and #row.type > 0 and #row.default > 0, "row of " .. k)
    end
  end)

  it("is linked from the README", function()
    assert.truthy(require("matviews.files").read("README.md"):find("(docs/configuration.md)", 1, true))
  end)
end)

describe("per-definition lock and statement timeouts", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.exec("CREATE TABLE cfg_src (x int)")
  end)

  it("are accepted by the DSL, applied into the options and used by the job", function()
    local dir = H.tmpfile("_defs")
    assert(os.execute("mkdir -p " .. H.q(dir)))
    H.write(dir .. "/v.lua", [[
view "cfg_v" { sql = "SELECT x, pg_sleep(0.3)::text AS s FROM cfg_src", statement_timeout_ms = 100, lock_timeout_ms = 50 }
]])
    local r = H.mv("apply --catalog-only --definitions " .. H.q(dir))
    assert.are.equal(0, r.code, r.err)
    local d = mv.definitions.get("cfg_v")
    assert.are.same({ 100, 50 }, { math.tointeger(d.options.statement_timeout_ms), math.tointeger(d.options.lock_timeout_ms) })
    mv.exec("INSERT INTO cfg_src VALUES (1)")
    local run = mv.create("cfg_v")
    assert.are.equal("failed", run.status)
    assert.matches("statement timeout", run.error)
    -- plan sees a changed timeout under its own key
    H.write(dir .. "/v.lua", [[
view "cfg_v" { sql = "SELECT x, pg_sleep(0.3)::text AS s FROM cfg_src", statement_timeout_ms = 0, lock_timeout_ms = 50 }
]])
    r = H.mv("apply --catalog-only --definitions " .. H.q(dir))
    assert.matches("updated +cfg_v %(statement_timeout_ms%)", r.out)
    assert.are.equal("success", mv.create("cfg_v").status)
  end)

  it("refuses a timeout that is no non-negative integer, naming the line", function()
    local dir = H.tmpfile("_defs")
    assert(os.execute("mkdir -p " .. H.q(dir)))
    H.write(dir .. "/v.lua", 'view "cfg_w" {\n  sql = "SELECT 1",\n  lock_timeout_ms = -5,\n}\n')
    local r = H.mv("apply --definitions " .. H.q(dir))
    assert.are.equal(2, r.code)
    assert.matches("v.lua:3: view 'cfg_w': key 'lock_timeout_ms' must be a non%-negative integer %(milliseconds%), got number", r.err)
  end)
end)
