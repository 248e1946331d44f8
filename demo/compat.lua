-- What the demo does on a build without the view services and jobs: saves a
-- definition with SQL, creates the view with its unique index, and refreshes
-- it with its strategy (swap: build a new view, rename it into place in one
-- transaction). Returns run-like tables { status, duration_ms, rows_count,
-- meta = { strategy } } as the jobs do. No runs are recorded.
local mv = require "matviews"
local M = {}

local STRATEGY = { regular = 0, concurrent = 1, swap = 2 }

local function q(name) return mv.conn():quote_ident(name) end

-- Inserts or updates the catalog row of d (by name).
function M.save(d)
  mv.exec([[INSERT INTO mat_view_definitions (name, sql, refresh_strategy, unique_index_columns, indexes, comment)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (name) DO UPDATE SET sql = excluded.sql, refresh_strategy = excluded.refresh_strategy,
              unique_index_columns = excluded.unique_index_columns, indexes = excluded.indexes,
              comment = excluded.comment, updated_at = now()]],
    d.name, d.sql, STRATEGY[d.refresh_strategy or "regular"], d.unique_index_columns or {}, d.indexes or {},
    d.comment or mv.null)
end

-- CREATE UNIQUE INDEX over d's unique columns on relation rel.
local function unique_index(c, rel, d, suffix)
  if not d.unique_index_columns or #d.unique_index_columns == 0 then return end
  local cols = {}
  for i, col in ipairs(d.unique_index_columns) do cols[i] = q(col) end
  c:exec(("CREATE UNIQUE INDEX %s ON %s (%s)"):format(q(d.name .. "_uniq" .. (suffix or "")), q(rel),
    table.concat(cols, ", ")))
end

-- Times fn(conn) in a transaction; returns a run-like table.
local function timed(strategy, d, fn)
  local t = mv.core.sys.monotonic_ms()
  mv.transaction(fn)
  local n = mv.query("SELECT count(*) AS n FROM " .. q(d.name))[1].n
  return { status = "success", duration_ms = math.floor(mv.core.sys.monotonic_ms() - t),
           rows_count = n, meta = { strategy = strategy } }
end

function M.create(d)
  return timed(nil, d, function(c)
    c:exec(("CREATE MATERIALIZED VIEW %s AS %s"):format(q(d.name), d.sql))
    unique_index(c, d.name, d)
  end)
end

function M.refresh(d)
  local s = d.refresh_strategy or "regular"
  return timed(s, d, function(c)
    if s == "regular" then
      c:exec("REFRESH MATERIALIZED VIEW " .. q(d.name))
    elseif s == "concurrent" then
      c:exec("REFRESH MATERIALIZED VIEW CONCURRENTLY " .. q(d.name))
    else
      local new = d.name .. "__new"
      c:exec(("DROP MATERIALIZED VIEW IF EXISTS %s"):format(q(new)))
      c:exec(("CREATE MATERIALIZED VIEW %s AS %s"):format(q(new), d.sql))
      unique_index(c, new, d, "_new")
      c:exec("DROP MATERIALIZED VIEW " .. q(d.name))
      c:exec(("ALTER MATERIALIZED VIEW %s RENAME TO %s"):format(q(new), q(d.name)))
      c:exec(("ALTER INDEX %s RENAME TO %s"):format(q(d.name .. "_uniq_new"), q(d.name .. "_uniq")))
    end
  end)
end

return M
