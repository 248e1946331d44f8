-- Benchmark helper (not a test): turns the last recorded run's begin and
-- finish statements, as a server log with log_statement = all shows them
-- (text and parameters), into a script for a single-user backend
-- (`postgres --single -j`): the two statements prepared as the recorder
-- prepares them (parameter types inferred), then PAIRS begin + finish
-- pairs over the views v_1..v_100 in turn (the view's name replaced in the
-- parameters; the finish finalises the run its begin inserted: lastval()).
-- bench/recorder_cpu.sh runs the script under callgrind.
--   ./matviews bench/recorder_replay.lua SERVER_LOG PAIRS > script.sql
local log, pairs_n = arg[1], tonumber(arg[2])
assert(log and pairs_n, "usage: matviews bench/recorder_replay.lua SERVER_LOG PAIRS")

-- The log's statements: { sql = text, params = "$1 = ..., $2 = ..." }.
local stmts, last = {}, nil
for line in io.lines(log) do
  local sql = line:match("LOG:  execute [%w_]+: (.*)$")
  local params = line:match("DETAIL:  parameters: (.*)$")
  if sql then
    last = { sql = sql }
    stmts[#stmts + 1] = last
  elseif params and last then
    last.params = params
  elseif line:match("^\t") and last and not last.params then
    last.sql = last.sql .. "\n" .. line
  else
    last = nil
  end
end
local begin, finish
for _, s in ipairs(stmts) do
  if s.sql:match("^WITH c AS") and s.sql:match("INSERT INTO mat_view_refresh_runs") then begin = s end
  if s.sql:match("^UPDATE mat_view_refresh_runs SET status") then finish = s end
end
assert(begin and finish and begin.params and finish.params, "no recorded refresh in " .. log)

-- "$1 = NULL, $2 = 'it''s'" -> { "NULL", "'it''s'" } (the log quotes values as SQL literals).
local function values(params)
  local out, i = {}, 1
  while i <= #params do
    local _, e = params:find("^%$%d+ = ", i)
    assert(e, "cannot read parameters: " .. params)
    i = e + 1
    local v
    if params:sub(i, i) == "'" then
      local j = i + 1
      while true do
        local q = assert(params:find("'", j, true), "unterminated literal")
        if params:sub(q + 1, q + 1) == "'" then j = q + 2 else v = params:sub(i, q); i = q + 1; break end
      end
    else
      v = params:match("^[^,]+", i)
      i = i + #v
    end
    out[#out + 1] = v
    if params:sub(i, i + 1) == ", " then i = i + 2 end
  end
  return out
end

local bvals, fvals = values(begin.params), values(finish.params)
local view = bvals[2]:match("^'(v_%d+)'$")
assert(view, "the begin named no view v_N by name: " .. bvals[2])
fvals[1] = "lastval()" -- the run its begin inserted

local out = { "PREPARE b AS " .. begin.sql .. ";\n\n", "PREPARE f AS " .. finish.sql .. ";\n\n" }
local function args(vals, name)
  local t = {}
  for i, v in ipairs(vals) do t[i] = v:gsub(view .. "([^%d])", name .. "%1") end
  return table.concat(t, ", ")
end
for k = 0, pairs_n - 1 do
  local name = "v_" .. (k % 100 + 1)
  out[#out + 1] = ("EXECUTE b(%s);\n\nEXECUTE f(%s);\n\n"):format(args(bvals, name), args(fvals, name))
end
io.write(table.concat(out))
