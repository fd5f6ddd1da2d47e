-- Undoes session_janitor migration 7, for a rollback from 0.2.0 to 0.1.0 only (docs/deployment.md,
-- "Rolling back"), before sql/undo/000006.sql. 0.1.0 refuses any schema version but its own 5.
-- Migration 7 only made the enqueue functions stricter (a large payload shaped like no request is
-- refused), added revocation_shape_issue, and retired dedupe keys of jobs older than migration 4:
-- 0.1.0's worker calls none of those functions and never reads a key, so they stay, and only the
-- version row goes. Rolling forward again applies migration 7 again, which changes nothing twice.
-- Run it as the migrator, in one transaction:
--   psql "$MIGRATOR_DATABASE_URL" -1 -v ON_ERROR_STOP=1 -f sql/undo/000007.sql
SELECT pg_advisory_xact_lock(1936356202); -- migrate's lock (0x736a736a): no migrate runs meanwhile
DO $$
BEGIN
  IF (SELECT max(version) FROM session_janitor.migration) > 7 THEN
    RAISE EXCEPTION 'the session_janitor schema is past version 7: 0.1.0 cannot run against it, roll forward instead';
  END IF;
END
$$;
DELETE FROM session_janitor.migration WHERE version = 7;
