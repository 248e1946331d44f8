-- Scratch files: matviews writes none to a shared place under a name
-- someone else could guess or create first. What needs one (the report's
-- Graphviz input, the demo's variant definitions) gets a private directory
-- (core.sys.mkdtemp: mode 0700, under $TMPDIR) that is removed however the
-- work ends.
local H = require "spec.helper"
local mv = require "matviews"
local files = require "matviews.files"

-- A fresh empty directory to serve as TMPDIR.
local function tmpdir()
  local d = H.tmpfile("_tmpdir")
  assert(os.execute("mkdir " .. H.q(d)))
  return d
end

describe("files.with_scratch_dir", function()
  it("gives a new directory of mode 0700 under $TMPDIR, removed with its files after", function()
    local base = tmpdir()
    local r = H.mv("-e " .. H.q([[
      local dirs = {}
      for i = 1, 2 do
        require("matviews.files").with_scratch_dir(function(dir)
          dirs[i] = dir
          local f = assert(io.open(dir .. "/x", "w")); f:write("x"); f:close()
          io.write(io.popen("stat -c %a " .. dir):read("a"))
        end)
      end
      print(dirs[1] ~= dirs[2], dirs[1]:match("^(.*)/matviews%-%w+$"))]]), { env = { TMPDIR = base } })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("700\n700\ntrue\t" .. base .. "\n", r.out)
    assert.are.same({}, mv.core.sys.listdir(base))
  end)

  it("removes the directory when the work raises, and re-raises", function()
    local base = tmpdir()
    local r = H.mv("-e " .. H.q([[
      local ok, e = pcall(require("matviews.files").with_scratch_dir, function(dir)
        io.open(dir .. "/y", "w"):close()
        error({ code = 7 })
      end)
      print(ok, e.code)]]), { env = { TMPDIR = base } })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("false\t7\n", r.out)
    assert.are.same({}, mv.core.sys.listdir(base))
  end)

  it("removes the directory when a SIGINT stops the work", function()
    local base = tmpdir()
    local r = H.mv("-e " .. H.q([[
      require("matviews.files").with_scratch_dir(function(dir)
        io.open(dir .. "/z", "w"):close()
        io.popen("kill -INT " .. mv.core.sys.getpid()):close()
        local deadline = os.time() + 30 -- never reached: the SIGINT stops it
        while os.time() < deadline do end
      end)
      os.exit(3)]]), { env = { TMPDIR = base } })
    assert.are.equal(130, r.code, r.err)
    assert.are.same({}, mv.core.sys.listdir(base))
  end)
end)

describe("the report's dependency graph drawn by Graphviz", function()
  setup(function()
    H.fresh_db()
    mv.init()
    mv.definitions.save({ name = "sc_a", sql = "SELECT 1 AS x" })
    mv.definitions.save({ name = "sc_b", sql = "SELECT x FROM sc_a" })
    mv.create("sc_a")
    mv.create("sc_b")
  end)

  it("writes its input in a private directory and removes it", function()
    local base, page = tmpdir(), H.tmpfile(".html")
    local r = H.mv("report --html " .. H.q(page), { env = { TMPDIR = base } })
    assert.are.equal(0, r.code, r.err)
    assert.matches('data%-renderer="graphviz"', H.slurp(page))
    assert.are.same({}, mv.core.sys.listdir(base))
  end)
end)
