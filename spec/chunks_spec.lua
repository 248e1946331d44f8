-- The compiled form of modules kept between runs (src/chunks.c): used while
-- the source is unchanged, never once it has changed or is damaged, and
-- invisible in what errors say.
local H = require "spec.helper"

describe("compiled modules", function()
  local dir, name, src, cache

  before_each(function()
    dir = H.tmpfile("") .. "_mods"
    assert(os.execute("mkdir -p " .. H.q(dir)))
    name = ("chunkmod_%d_%d"):format(os.time(), math.random(1, 1e9))
    src = dir .. "/" .. name .. ".lua"
    cache = "build/luac/" .. name .. ".luac"
  end)

  after_each(function()
    os.remove(src)
    os.remove(cache)
    os.execute("rm -rf " .. H.q(dir))
  end)

  -- Runs a host that requires the module and prints what f() returns.
  local function call()
    return H.mv("-e " .. H.q(("package.path = %q .. '/?.lua;' .. package.path print(require(%q).f())")
      :format(dir, name)))
  end

  it("loads a module from its compiled form, and from its source once it changed", function()
    H.write(src, "return { f = function() return 'one' end }\n")
    local r = call()
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("one\n", r.out)
    local compiled = H.slurp(cache)
    assert.truthy(#compiled > 0, "no compiled file was written")
    assert.truthy(compiled:find(src, 1, true), "the compiled file does not name its source")
    assert.are.equal("one\n", call().out)
    -- same size, so only the modification time and the inode tell; a new
    -- file renamed into place (as editors and git do) changes the inode
    -- whatever the clock's granularity
    H.write(src .. ".new", "return { f = function() return 'two' end }\n")
    assert(os.rename(src .. ".new", src))
    assert.are.equal("two\n", call().out)
    assert.are_not.equal(compiled, H.slurp(cache))
  end)

  it("says where an error is as the source does, from the compiled form too", function()
    H.write(src, "local M = {}\n\nfunction M.f()\n  error('broken here')\nend\nreturn M\n")
    local first, second = call(), call()
    assert.are.equal(1, first.code)
    assert.matches(name .. "%.lua:4: broken here", first.err)
    assert.truthy(#H.slurp(cache) > 0)
    assert.are.equal(first.err, second.err)
  end)

  it("parses the source again when the compiled file is damaged", function()
    H.write(src, "return { f = function() return 'whole' end }\n")
    assert.are.equal("whole\n", call().out)
    local good = H.slurp(cache)
    H.write(cache, good:sub(1, #good - 20))
    local r = call()
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("whole\n", r.out)
    assert.are.equal(#good, #H.slurp(cache))
  end)

  it("reports a module's syntax error as require does", function()
    H.write(src, "return { x = 1\n")
    local r = call()
    assert.are.equal(1, r.code)
    assert.matches("error loading module '" .. name .. "' from file '[^']*" .. name .. "%.lua':", r.err)
    assert.matches(name .. "%.lua:2: '}' expected", r.err)
  end)
end)
