-- Schema step 6: indexes the reports (runs, stats, list, metrics) read by.
-- Each report asks, per view, for the latest runs (of a status) newest
-- first; (definition, created_at) and (definition, status, created_at) answer
-- that with a short backward index scan however long the history grows.
-- The small partial index on unfinished runs finds running and orphaned
-- runs without reading the history.
local sql = {}
for _, t in ipairs({ "mat_view_create_runs", "mat_view_refresh_runs", "mat_view_delete_runs" }) do
  sql[#sql + 1] = ("CREATE INDEX IF NOT EXISTS index_%s_on_definition_created_at ON %s (mat_view_definition_id, created_at);")
    :format(t, t)
  sql[#sql + 1] = ("CREATE INDEX IF NOT EXISTS index_%s_on_definition_status_created_at ON %s (mat_view_definition_id, status, created_at);")
    :format(t, t)
  sql[#sql + 1] = ("CREATE INDEX IF NOT EXISTS index_%s_unfinished ON %s (created_at) WHERE status IN (0, 1);")
    :format(t, t)
end

return {
  version = 6,
  name = "report_indexes",
  sql = table.concat(sql, "\n"),
}
