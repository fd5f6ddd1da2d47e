-- Undoes session_janitor migration 8, for a rollback from this release to 0.1.0 only (docs/deployment.md,
-- "Rolling back"), before sql/undo/000007.sql. Migration 8 only added the pause and blast_guard tables, which no
-- earlier release reads: they go (and with it any pause in force: the older release cannot
-- obey one), and so does the version row. Rolling forward again creates it again, empty.
-- Run it as the migrator, in one transaction:
--   psql "$MIGRATOR_DATABASE_URL" -1 -v ON_ERROR_STOP=1 -f sql/undo/000008.sql
SELECT pg_advisory_xact_lock(1936356202); -- migrate's lock (0x736a736a): no migrate runs meanwhile
DO $$
BEGIN
  IF (SELECT max(version) FROM session_janitor.migration) > 8 THEN
    RAISE EXCEPTION 'the session_janitor schema is past version 8: 0.1.0 cannot run against it, roll forward instead';
  END IF;
END
$$;
DROP TABLE IF EXISTS session_janitor.pause;
DROP TABLE IF EXISTS session_janitor.blast_guard;
DELETE FROM session_janitor.migration WHERE version = 8;
