-- The catalog installed by `matviews init`: the seed's tables, columns,
-- types, index names and FKs; idempotent; no PUBLIC grants.
local H = require "spec.helper"
local mv = require "matviews"
local cjson = require "cjson"

local function columns(tbl)
  local out = {}
  for _, r in ipairs(mv.query([[SELECT column_name, data_type, is_nullable FROM information_schema.columns
      WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position]], tbl)) do
    out[r.column_name] = r.data_type .. (r.is_nullable == "NO" and " not null" or "")
  end
  return out
end

describe("matviews init", function()
  setup(function() H.fresh_db() end)

  it("installs the catalog and reports it, then changes nothing the second time", function()
    local r = H.mv("init")
    assert.are.equal(0, r.code)
    assert.matches("^catalog at version %d+; applied: 001_catalog", r.out)
    r = H.mv("init --json")
    assert.are.equal(0, r.code)
    local doc = cjson.decode(r.out)
    assert.are.same({}, doc.applied)
    assert.is_true(doc.version >= 1)
    assert.matches("^catalog up to date", H.mv("init").out)
  end)

  it("creates the run tables with the seed's columns and types", function()
    for _, t in ipairs({ "mat_view_create_runs", "mat_view_refresh_runs", "mat_view_delete_runs" }) do
      local c = columns(t)
      assert.are.equal("bigint not null", c.mat_view_definition_id)
      assert.are.equal("integer not null", c.status)
      assert.are.equal("timestamp with time zone", c.started_at)
      assert.are.equal("timestamp with time zone", c.finished_at)
      assert.are.equal("integer", c.duration_ms)
      assert.are.equal("text", c.error)
      assert.are.equal("jsonb not null", c.meta)
      assert.are.equal("timestamp with time zone not null", c.created_at)
      assert.are.equal("timestamp with time zone not null", c.updated_at)
      assert.are.equal(t == "mat_view_refresh_runs" and "integer" or nil, c.rows_count)
      local idx = mv.query("SELECT 1 FROM pg_indexes WHERE tablename = $1 AND indexname = $2", t,
        "index_" .. t .. "_on_mat_view_definition_id")
      assert.are.equal(1, #idx)
      local fk = mv.query([[SELECT confrelid::regclass::text AS ref FROM pg_constraint
        WHERE conrelid = $1::regclass AND contype = 'f']], t)
      assert.are.same({ { ref = "mat_view_definitions" } }, fk)
    end
  end)

  it("creates mat_view_definitions with the design's columns", function()
    local c = columns("mat_view_definitions")
    assert.are.equal("bigint not null", c.id)
    assert.are.equal("text not null", c.name)
    assert.are.equal("text not null", c.sql)
    assert.are.equal("integer not null", c.refresh_strategy)
    assert.are.equal("jsonb not null", c.unique_index_columns)
    assert.are.equal("jsonb not null", c.dependencies)
    assert.are.equal("text", c.schedule_cron)
  end)

  it("grants nothing to PUBLIC", function()
    local seen = mv.query([[SELECT count(*) AS n FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
      WHERE c.relname = 'pg_class' AND a.grantee = 0]])[1].n
    assert.is_true(seen > 0) -- the query does see PUBLIC grants where there are some
    local public = mv.query([[SELECT c.relname FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
      WHERE (c.relname LIKE 'mat_view_%' OR c.relname LIKE 'matviews_%') AND a.grantee = 0]])
    assert.are.same({}, public)
  end)

  it("is safe to run from two processes at once", function()
    H.fresh_db()
    local r = H.sh(H.bin .. " init >/dev/null & " .. H.bin .. " init >/dev/null & wait; " .. H.bin .. " init")
    assert.are.equal("", r.err)
    assert.matches("up to date", r.out)
  end)
end)
