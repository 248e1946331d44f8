-- `matviews report --html FILE [--since 30d] [NAME...]`: the run history as
-- one self-contained HTML page (overview, charts, last runs, failures,
-- dependency graph; matviews.report + matviews.report_html). FILE `-` is
-- stdout; otherwise the page is written beside FILE and renamed over it, so
-- a cron job never leaves half a page. --json prints the data instead.
local M = {
  name = "report",
  summary = "Write the run history as one self-contained HTML page (--html FILE, - for stdout).",
}

function M.configure(cmd)
  cmd:argument("names", "Only these views (schema-qualified allowed); default all."):args("*")
  cmd:option("--html", "Write the page to FILE (- for stdout).")
  cmd:option("--since", "The window: runs created within this duration (90s, 30m, 24h, 7d, 2w), "
    .. "or all for the whole history.", require("matviews.report").DEFAULT_SINCE)
  cmd:epilog("Example: matviews report --html /var/www/matviews.html --since 7d\n"
    .. "The page needs no network: scripts, styles and data are inside it. Charts of a view with many runs "
    .. "are aggregated per time period, and the page says so.")
end

-- Writes text to path through a temporary file renamed over it.
local function write_file(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then require("matviews").error({ message = "cannot write the report: " .. tostring(err) }) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    require("matviews").error({ message = "cannot write the report: " .. tostring(rerr) })
  end
end

function M.run(args, ctx)
  local targets = require "matviews.targets"
  if not args.html and not ctx.options.json then targets.usage("say where to write the page: --html FILE (- for stdout), or --json") end
  local data = require("matviews.report").data({ since = args.since, views = args.names })
  -- a strategy no file declares: the page is written, the error (file and
  -- line) goes to stderr and the exit code is 1
  local errs = {}
  for _, v in ipairs(data.views) do if v.strategy_error then errs[v.view] = v.strategy_error end end
  local function done() return require("matviews.strategies").report_errors(errs) > 0 and 1 or 0 end
  if not args.html then require("matviews.output").json(data); return done() end
  local page = require("matviews.report_html").render(data)
  if args.html == "-" then io.stdout:write(page); return done() end
  write_file(args.html, page)
  io.write(("wrote %s: %s, %d kB\n"):format(args.html, require("matviews.format").count(#data.views, "view"),
    (#page + 1023) // 1024))
  return done()
end

return M
