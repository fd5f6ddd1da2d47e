-- Undoes session_janitor migration 6, for a rollback from 0.2.0 to 0.1.0 only (docs/deployment.md,
-- "Rolling back"). 0.1.0 refuses any schema version but its own 5, and migration 6 only added two
-- columns to the version table that 0.1.0 never reads: removing them loses nothing. Run it as the
-- migrator, in one transaction, after `kubectl rollout undo` (the 0.2.0 pods keep working meanwhile:
-- they read the version table only at start):
--   psql "$MIGRATOR_DATABASE_URL" -1 -v ON_ERROR_STOP=1 -f sql/undo/000006.sql
-- A later migration than 6 applied: this script refuses, since 0.1.0 cannot run against it anyway.
SELECT pg_advisory_xact_lock(1936356202); -- migrate's lock (0x736a736a): no migrate runs meanwhile
DO $$
BEGIN
  IF (SELECT max(version) FROM session_janitor.migration) > 6 THEN
    RAISE EXCEPTION 'the session_janitor schema is past version 6: 0.1.0 cannot run against it, roll forward instead';
  END IF;
END
$$;
DELETE FROM session_janitor.migration WHERE version = 6;
ALTER TABLE session_janitor.migration DROP COLUMN IF EXISTS breaking, DROP COLUMN IF EXISTS release;
