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

describe("matviews init --grant-read", function()
  setup(function() H.fresh_db() end)

  it("grants read-only access on the catalog to a role", function()
    mv.exec("DROP ROLE IF EXISTS mv_dashboard")
    mv.exec("CREATE ROLE mv_dashboard")
    local r = H.mv("init --grant-read mv_dashboard")
    assert.are.equal(0, r.code)
    assert.matches("granted SELECT on %d+ tables to mv_dashboard", r.out)
    local privs = mv.query([[SELECT has_table_privilege('mv_dashboard', 'mat_view_refresh_runs', 'SELECT') s,
      has_table_privilege('mv_dashboard', 'mat_view_refresh_runs', 'INSERT') i,
      has_table_privilege('mv_dashboard', 'mat_view_definitions', 'SELECT') d]])[1]
    assert.are.same({ s = true, i = false, d = true }, privs)
  end)

  it("refuses a role that does not exist", function()
    local r = H.mv("init --grant-read no_such_role_x")
    assert.are.equal(1, r.code)
    assert.are.equal('matviews: --grant-read: role "no_such_role_x" does not exist\n', r.err)
  end)
end)

describe("passwords", function()
  it("are masked in --verbose output", function()
    local r = H.mv("--verbose --dsn 'postgresql://bob:s3cr3tpw@127.0.0.1:1/db' -e 'mv.query(\"select 1\")'")
    assert.matches("connecting to postgresql://bob:%*%*%*@127.0.0.1:1/db %(dsn%)", r.err)
    assert.is_nil(r.err:find("s3cr3tpw"))
    r = H.mv("--verbose --dsn 'host=127.0.0.1 port=1 password=s3cr3tpw' -e 'mv.query(\"select 1\")'")
    assert.matches("password=%*%*%*", r.err)
    assert.is_nil(r.err:find("s3cr3tpw"))
  end)

  it("are masked by mv.redact_dsn in every form", function()
    assert.are.equal("postgres://u:***@h/db", mv.redact_dsn("postgres://u:pw@h/db"))
    assert.are.equal("postgres://h/db?user=u&password=***", mv.redact_dsn("postgres://h/db?user=u&password=pw"))
    assert.are.equal("host=h password=*** user=u", mv.redact_dsn("host=h password=pw user=u"))
    assert.are.equal("host=h password=*** user=u", mv.redact_dsn("host=h password='p w' user=u"))
  end)
end)
