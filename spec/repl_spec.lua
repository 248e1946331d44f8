-- The REPL (`matviews repl`): from a pipe (expressions, multi-line input,
-- errors that do not stop it, query results as aligned tables), through a
-- pseudo-terminal (readline: multi-line input, tab completion, Ctrl-C,
-- persistent history), and its printer and completer in-process.
local H = require "spec.helper"
local repl = require "matviews.repl"

-- Runs `matviews repl` reading text from a pipe.
local function piped(text)
  return H.mv("repl", { stdin = text })
end

describe("the REPL from a pipe", function()
  setup(function() H.fresh_db() end)

  it("prints what expressions and return statements give, without prompts", function()
    local r = piped('1 + 1\nreturn "x", 2\nmv.version\nlocal y = 3\nnil\n')
    assert.are.equal(0, r.code)
    assert.are.equal("2\nx\t2\n" .. require("matviews").version .. "\nnil\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("continues a chunk whose syntax error ends in <eof>", function()
    local r = piped('for i = 1, 2 do\n  print("i=" .. i)\nend\nt = {\n  a = 1,\n}\nt\ns = [[one\ntwo]]\ns\n')
    assert.are.equal("", r.err)
    assert.are.equal('i=1\ni=2\n{ a = 1 }\none\ntwo\n', r.out)
  end)

  it("prints errors on stderr and goes on with the next line", function()
    local r = piped(table.concat({
      "error('boom')", "print('after boom')", "x = = 1",
      "mv.query('select * from no_such_table')", "print('still here')",
      "error({ message = 'a table' })", "for i = 1, 2 do",
    }, "\n") .. "\n")
    assert.are.equal(0, r.code)
    assert.are.equal("after boom\nstill here\n", r.out)
    assert.are.equal(table.concat({
      "stdin:1: boom",
      "stdin:1: unexpected symbol near '='",
      'relation "no_such_table" does not exist (SQLSTATE 42P01)',
      "a table",
      "stdin:1: 'end' expected near <eof>",
    }, "\n") .. "\n", r.err)
  end)

  it("prints a query result as an aligned table in select order", function()
    local r = piped([[mv.query("select 1 as id, 'ab' as name, null as note union all select 22, 'c', 'x' order by 1")
mv.query("select 1 as n where false")
mv.query("select $1::int as only", 7)
]])
    assert.are.equal("", r.err)
    assert.are.equal(table.concat({
      "id  name  note",
      "--  ----  ----",
      " 1  ab",
      "22  c     x",
      "(2 rows)",
      "n",
      "-",
      "(0 rows)",
      "only",
      "----",
      "   7",
      "(1 row)",
    }, "\n") .. "\n", r.out)
  end)

  it("has mv connected to the database of the session", function()
    local r = piped("mv.query('select current_database() as db')[1].db\n")
    assert.are.equal(H.dbname .. "\n", r.out)
  end)
end)

describe("the REPL printer", function()
  it("pretty-prints nested tables with sorted keys and quoted strings", function()
    assert.are.equal('{ 1, "two", { 3 }, a = true, b = { c = "x\\ny" }, ["end"] = 2, ["x y"] = 1 }',
      repl.pretty({ 1, "two", { 3 }, a = true, b = { c = "x\ny" }, ["x y"] = 1, ["end"] = 2 }))
    assert.are.equal("{}", repl.pretty({}))
    assert.are.equal("{ n = null }", repl.pretty({ n = require("matviews").null }))
  end)

  it("marks cycles instead of following them", function()
    local t = { name = "root", child = {} }
    t.child.parent = t
    t.self = t
    assert.are.equal('{ child = { parent = <cycle> }, name = "root", self = <cycle> }', repl.pretty(t))
  end)

  it("prints a shared table twice when it is no cycle", function()
    local shared = { 1 }
    assert.are.equal("{ a = { 1 }, b = { 1 } }", repl.pretty({ a = shared, b = shared }))
  end)

  it("breaks long tables over indented lines", function()
    local t = { alpha = ("a"):rep(30), beta = { gamma = ("g"):rep(40), delta = ("d"):rep(40) } }
    assert.are.equal(table.concat({
      "{",
      '  alpha = "' .. ("a"):rep(30) .. '",',
      "  beta = {",
      '    delta = "' .. ("d"):rep(40) .. '",',
      '    gamma = "' .. ("g"):rep(40) .. '"',
      "  }",
      "}",
    }, "\n"), repl.pretty(t))
  end)

  it("prints tables with __tostring through it (matviews errors)", function()
    local ok, e = pcall(require("matviews").query, "select 1/0")
    assert.is_false(ok)
    assert.are.equal("division by zero (SQLSTATE 22012)", repl.format(e))
  end)

  it("tells row arrays from other tables", function()
    assert.is_true(repl.is_rows({ { a = 1 }, { a = 2, b = "x" } }))
    assert.is_false(repl.is_rows({ { a = { 1 } } }))
    assert.is_false(repl.is_rows({ 1, 2 }))
    assert.is_false(repl.is_rows({}))
    assert.are.equal("a  b\n-  -\n1\n2  x\n(2 rows)", repl.format({ { a = 1 }, { a = 2, b = "x" } }))
  end)
end)

describe("the REPL completer", function()
  it("completes fields of mv, nested fields and globals", function()
    local env = { mv = require("matviews"), string = string }
    assert.are.same({ "mv.version" }, repl.complete("mv.vers", env))
    assert.are.same({ "mv.db.start", "mv.db.status", "mv.db.stop" }, repl.complete("mv.db.st", env))
    assert.are.same({ "mv.core.sys.isatty" }, repl.complete("mv.core.sys.isat", env))
    assert.are.same({ "mv" }, repl.complete("m", env))
    assert.are.same({}, repl.complete("mv.nothing.here", env))
  end)

  it("completes methods after a colon through the metatable", function()
    local env = { conn = require("matviews").conn() }
    local got = repl.complete("conn:qu", env)
    assert.are.same({ "conn:query", "conn:quote_ident" }, got)
  end)
end)

-- A script that waits until a query whose text is LIKE arg[1] runs in
-- another backend (at most 60 s); exit 0 when seen.
local WAITQ = [[
for _ = 1, 600 do
  local n = #mv.query("select 1 from pg_stat_activity where query like $1 and pid <> pg_backend_pid()", arg[1])
  if n > 0 then os.exit(0) end
  mv.core.sys.sleep_ms(100)
end
os.exit(1)
]]

-- Drives `matviews repl` on a pseudo-terminal (util-linux `script`): steps
-- are { send = bytes }, { wait = text seen in the output (one line) } or
-- { wait_query = "sql LIKE pattern" } (such a query is running).
-- Returns the code, the terminal's output and the waits that timed out.
local function pty(steps, env)
  local out = H.tmpfile(".pty")
  local flag = out .. ".timeout"
  local waitq = H.write(out .. ".waitq.lua", WAITQ)
  local lines = {
    "out=" .. H.q(out), "flag=" .. H.q(flag), ': >"$out"',
    [[waitfor() { i=0; until grep -qF -- "$1" "$out"; do i=$((i+1)); ]]
      .. [[[ $i -gt 600 ] && { echo "$1" >>"$flag"; return 1; }; sleep 0.1; done; }]],
  }
  local feed = {}
  for _, s in ipairs(steps) do
    if s.send then
      local bytes = s.send:gsub("[^%w ]", function(c) return ("\\0%03o"):format(c:byte()) end)
      feed[#feed + 1] = "printf '%b' " .. H.q(bytes)
    elseif s.wait then
      feed[#feed + 1] = "waitfor " .. H.q(s.wait)
    else
      feed[#feed + 1] = H.bin .. " " .. H.q(waitq) .. " " .. H.q(s.wait_query) .. ' || echo query >>"$flag"'
    end
  end
  feed[#feed + 1] = "sleep 0.2; printf '\\004'"
  -- script runs the command with $SHELL -c; a shell that stays as the parent
  -- (dash does) shares the terminal's process group, gets the Ctrl-C too and
  -- exits 130. `exec` makes the host the terminal's only process, whatever
  -- SHELL is; SHELL is pinned so every environment runs the same way.
  local vars = "TERM=dumb SHELL=/bin/sh MATVIEWS_HISTORY=" .. H.q(env and env.history or "")
  lines[#lines + 1] = "{ " .. table.concat(feed, "; ") .. "; } | " .. vars
    .. " timeout 120 script -qfec " .. H.q("exec " .. H.bin .. " repl") .. ' /dev/null >"$out"'
  local r = H.sh(table.concat(lines, "\n"))
  return r.code, H.slurp(out), H.slurp(flag)
end

describe("the REPL on a terminal", function()
  setup(function() H.fresh_db() end)

  it("reads multi-line input with a continuation prompt", function()
    local code, out, timeouts = pty({
      { wait = "mv> " },
      { send = "for i = 1, 2 do\n" }, { wait = "mv>> " },
      { send = 'print(("row%d"):format(i))\n' }, { send = "end\n" }, { wait = "row2" },
    })
    assert.are.equal("", timeouts)
    assert.are.equal(0, code)
    assert.matches("connected to spec_repl as ", out)
    assert.matches("row1\r\nrow2\r\n", out, 1, true)
  end)

  it("completes fields of mv, nested fields and globals with tab", function()
    local code, out, timeouts = pty({
      { wait = "mv> " },
      { send = 'mv.vers\t .. "!"\n' }, { wait = require("matviews").version .. "!" },
      { send = 'type(mv.core.sys.isat\t) .. "?"\n' }, { wait = "function?" },
      { send = 'string.upp\t("ab") .. "#"\n' }, { wait = "AB#" },
    })
    assert.are.equal("", timeouts)
    assert.are.equal(0, code)
    assert.matches(require("matviews").version .. "!\r\n", out, 1, true)
    assert.matches("mv.core.sys.isatty", out, 1, true)
    assert.matches("function?\r\n", out, 1, true)
    assert.matches("AB#\r\n", out, 1, true)
  end)

  it("drops the line on Ctrl-C at the prompt, cancels a query on Ctrl-C and goes on", function()
    local code, out, timeouts = pty({
      { wait = "mv> " },
      { send = "partial garbage" }, { wait = "partial garbage" }, { send = "\3" },
      { send = 'return "after" .. "_ctrl_c"\n' }, { wait = "after_ctrl_c" },
      { send = 'mv.query("select pg_sleep(60)")\n' }, { wait_query = "select pg_sleep(60)%" },
      { send = "\3" }, { wait = "57014" },
      { send = 'print("loop" .. "ing"); for i = 1, math.huge do end\n' }, { wait = "looping" },
      { send = "\3" }, { wait = "interrupted!" },
      { send = 'return "still" .. "_alive"\n' }, { wait = "still_alive" },
    })
    assert.are.equal("", timeouts)
    assert.are.equal(0, code)
    assert.matches("after_ctrl_c", out, 1, true)
    assert.matches("canceling statement due to user request (SQLSTATE 57014)", out, 1, true)
    assert.matches("interrupted!", out, 1, true)
    assert.matches("still_alive", out, 1, true)
  end)

  it("keeps history across sessions in MATVIEWS_HISTORY", function()
    local hist = H.tmpfile(".history")
    local _, _, t1 = pty({ { wait = "mv> " }, { send = 'return "hist" .. "_one"\n' }, { wait = "hist_one" } },
      { history = hist })
    assert.are.equal("", t1)
    assert.are.equal('return "hist" .. "_one"\n', H.slurp(hist))
    local code, out, t2 = pty({ { wait = "mv> " }, { send = "\27[A\n" }, { wait = "hist_one" } }, { history = hist })
    assert.are.equal("", t2)
    assert.are.equal(0, code)
    assert.matches("hist_one\r\n", out, 1, true)
  end)
end)
