-- `matviews version`: prints the version of matviews and of Lua.
return {
  name = "version",
  summary = "Print the version.",
  run = function(_, ctx)
    if ctx.options.json then
      io.write(ctx.mv.json.encode({ matviews = ctx.mv.version, lua = _VERSION }), "\n")
    else
      io.write("matviews ", ctx.mv.version, " (", _VERSION, ")\n")
    end
    return 0
  end,
}
