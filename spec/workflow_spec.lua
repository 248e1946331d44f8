-- Named workflows: `workflow "name" (function(mv, args) ... end)` in
-- matviews.lua runs with `matviews run name [args]`; its return value is the
-- exit code; `run FILE.lua` keeps running scripts; unknown names are usage
-- errors (exit 2), missing files failures (exit 1).
local H = require "spec.helper"
local mv = require "matviews"

local CONFIG = [[
workflow "nightly" (function(mv, args)
  mv.exec("CREATE TABLE IF NOT EXISTS nightly_log (arg text)")
  for _, a in ipairs(args) do mv.exec("INSERT INTO nightly_log VALUES ($1)", a) end
  print(("nightly ran with %d args: %s"):format(#args, table.concat(args, " ")))
end)
workflow "exit_with" (function(mv, args)
  if args[1] == "false" then return false end
  return tonumber(args[1])
end)
workflow "broken" (function(mv, args)
  error("broken on purpose")
end)
]]

-- A project with CONFIG; returns the --config option for it.
local function project()
  local dir = H.tmpfile("_wf")
  assert(os.execute("mkdir -p " .. H.q(dir)))
  H.write(dir .. "/matviews.lua", CONFIG)
  return dir, "--config " .. H.q(dir .. "/matviews.lua") .. " "
end

describe("matviews run with workflows", function()
  setup(function() H.fresh_db() end)

  it("runs a named workflow with mv and its arguments", function()
    local _, cfg = project()
    local r = H.mv(cfg .. "run nightly one two --json")
    assert.are.equal("", r.err)
    assert.are.equal(0, r.code)
    assert.are.equal("nightly ran with 3 args: one two --json\n", r.out)
    local rows = mv.query("SELECT arg FROM nightly_log ORDER BY arg")
    assert.are.same({ { arg = "--json" }, { arg = "one" }, { arg = "two" } }, rows)
  end)

  it("exits with what the workflow returns: an integer, 1 for false, else 0", function()
    local _, cfg = project()
    assert.are.equal(5, H.mv(cfg .. "run exit_with 5").code)
    assert.are.equal(1, H.mv(cfg .. "run exit_with false").code)
    assert.are.equal(0, H.mv(cfg .. "run exit_with").code)
  end)

  it("reports an error in a workflow with file:line, exit 1", function()
    local _, cfg = project()
    local r = H.mv(cfg .. "run broken")
    assert.are.equal(1, r.code)
    assert.matches("^matviews: [^\n]*/matviews%.lua:11: broken on purpose\n$", r.err)
  end)

  it("names the declared workflows for an unknown one, exit 2", function()
    local _, cfg = project()
    local r = H.mv(cfg .. "run weekly")
    assert.are.equal(2, r.code)
    assert.are.equal("unknown workflow 'weekly' (declared: broken, exit_with, nightly)", H.usage_message(r.err))
    r = H.mv("run weekly")
    assert.are.equal(2, r.code)
    assert.are.equal("unknown workflow 'weekly' (declared: none)", H.usage_message(r.err))
  end)

  it("still runs script files, and fails on a missing one with exit 1", function()
    local _, cfg = project()
    local f = H.write(H.tmpfile(".lua"), "print('script', ...)")
    local r = H.mv(cfg .. "run " .. H.q(f) .. " a b")
    assert.are.equal(0, r.code)
    assert.are.equal("script\ta\tb\n", r.out)
    r = H.mv(cfg .. "run /nonexistent/nightly.lua")
    assert.are.equal(1, r.code)
    assert.are.equal("matviews: cannot open /nonexistent/nightly.lua: No such file or directory\n", r.err)
  end)
end)
