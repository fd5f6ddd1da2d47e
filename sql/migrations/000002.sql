-- session_janitor migration 2: the idle reaper position (db/sql/reap-idle.ts)
-- One row per reaped table: the pass walks (first_id, end_id] of the primary key and every id up to
-- last_id is done. Updated once per range in the statement that deletes the range, so a restart (or
-- a kill -9) resumes exactly there.
CREATE TABLE IF NOT EXISTS "session_janitor".reap_position (
  table_name       text        PRIMARY KEY,
  pass             integer     NOT NULL,
  first_id         bigint      NOT NULL,
  last_id          bigint      NOT NULL,
  end_id           bigint      NOT NULL,
  pass_started_at  timestamptz NOT NULL,
  pass_finished_at timestamptz,
  pass_deleted     bigint      NOT NULL DEFAULT 0,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE "session_janitor".reap_position IS
  'session-janitor idle reaper: where the walk of each table''s primary key stands (ids up to last_id are done in this pass)';
