-- Schema step 3: schedule slot claims. A worker running with --schedule
-- claims each due slot of a definition's cron by inserting its row; the
-- unique key makes the claim succeed for exactly one worker, however many
-- run, and the row remembers the last slot run (missed slots collapse).
return {
  version = 3,
  name = "schedule",
  sql = [[
CREATE TABLE mat_view_schedule_slots (
  mat_view_definition_id bigint NOT NULL REFERENCES mat_view_definitions (id) ON DELETE CASCADE,
  slot_time              timestamptz NOT NULL,
  schedule_cron          text NOT NULL,
  time_zone              text NOT NULL,
  claimed_at             timestamptz NOT NULL DEFAULT now(),
  hostname               text,
  process_pid            integer,
  job                    jsonb,
  CONSTRAINT mat_view_schedule_slots_unique UNIQUE (mat_view_definition_id, slot_time)
);
REVOKE ALL ON mat_view_schedule_slots FROM PUBLIC;
]],
}
