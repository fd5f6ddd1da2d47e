-- session_janitor migration 8: pauses of a task that every replica obeys between two batches, and that end by themselves (src/tasks/pause.ts); the blast-radius guard's state (src/tasks/blast-guard.ts)
-- One row per paused task, written by `session-janitor pause` and deleted by `resume`. A pause is in
-- force while now() < until: nothing deletes an expired row, so a forgotten pause ends at `until`
-- and the task runs again at its next tick. `until` is at most 24 hours after the pause was set or
-- renewed (set_at): a longer outage is a renewal, which counts in renewals and keeps `since`, so
-- the alert on a pause renewed repeatedly or lasting long sees it (docs/runbook.md, "Incidents").
-- paused_by is current_user of the session that set it: the database role, as the audit wants it.
-- The worker role may write the table (sql/roles.sql gives it DML on session_janitor's tables); the
-- producer roles have no right on it, so a producer cannot pause.
CREATE TABLE IF NOT EXISTS "session_janitor".pause (
  task      text        PRIMARY KEY CHECK (task IN ('purge-expired', 'reap-idle', 'revoke')),
  reason    text        NOT NULL CHECK (pg_catalog.length(reason) BETWEEN 1 AND 500),
  paused_by text        NOT NULL DEFAULT current_user,
  since     timestamptz NOT NULL DEFAULT pg_catalog.now(),
  set_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
  until     timestamptz NOT NULL,
  renewals  integer     NOT NULL DEFAULT 0 CHECK (renewals >= 0),
  CHECK (until > set_at AND until <= set_at + interval '24 hours'),
  CHECK (since <= set_at)
);
COMMENT ON TABLE "session_janitor".pause IS
  'session-janitor: tasks paused by `session-janitor pause` until `until` (at most 24 h after set_at); since: the start of the pause, kept by a renewal';

-- The blast-radius guard (src/tasks/blast-guard.ts): one row per scheduled task. drained_at: the
-- database's now() at the start of the task's last run that drained (after which no row then
-- eligible was left, but for held ones); tripped_*: a run that stopped because it would delete
-- more than JANITOR_BLAST_RADIUS of the table's rows that the drained run, under the settings of
-- now, should already have deleted (a clock jump or a mistaken setting, not rows that became
-- eligible since); confirmed_*: the operator who let it go on (`session-janitor confirm`), and why.
CREATE TABLE IF NOT EXISTS "session_janitor".blast_guard (
  task             text        PRIMARY KEY CHECK (task IN ('purge-expired', 'reap-idle')),
  drained_at       timestamptz,
  tripped_at       timestamptz,
  tripped_fraction float8,
  tripped_settings text,
  confirmed_by     text,
  confirmed_reason text CHECK (pg_catalog.length(confirmed_reason) BETWEEN 1 AND 500),
  confirmed_at     timestamptz
);
COMMENT ON TABLE "session_janitor".blast_guard IS
  'session-janitor blast-radius guard: the last drained run of each task, and a stop the operator must confirm (session-janitor confirm)';
