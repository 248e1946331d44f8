-- Schema step 14: an index on mat_view_definitions (name). A run's begin
-- (recorder.c) looks its definition up by name (or by id) and labels it
-- with an EXISTS over the same name in other schemas; so do the CLI's
-- target lists and `definitions.get`. The unique (schema_name, name) index
-- cannot answer a name alone, so each of those read every definition: at
-- 1,000 definitions, recording a run cost its recorder backend 1.5 times
-- the server CPU it costs at 100 (bench/recorder_cpu.sh, docs/benchmarks.md);
-- with the index it costs the same. Definitions are written rarely; the
-- index costs their writers next to nothing.
return {
  version = 14,
  name = "definition_name_index",
  sql = [[
CREATE INDEX IF NOT EXISTS index_mat_view_definitions_on_name ON mat_view_definitions (name);
]],
}
