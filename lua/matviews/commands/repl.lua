-- `matviews repl`: interactive Lua with `mv` (see lua/matviews/repl.lua).
-- On a terminal: line editing, history ($MATVIEWS_HISTORY, else
-- ~/.matviews_history), tab completion; from a pipe: each line, no prompts.
return {
  name = "repl",
  summary = "Interactive Lua with mv: history, completion, tables printed aligned.",
  run = function(_, ctx)
    return require("matviews.repl").run({ mv = ctx.mv })
  end,
}
