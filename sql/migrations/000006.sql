-- session_janitor migration 6: the version table records which migrations are breaking, and the release that applied each (src/db/compatibility.ts)
-- A release runs against the schema of a later release (expand/contract) unless that schema holds a
-- migration it does not know that is marked `--! breaking` in its file's header: every release from
-- this one on reads these columns at start and refuses, in one line that names the release to run.
-- `migrate` fills them in for each migration it applies from now on; the rows of migrations 1 to 5,
-- none of them breaking, keep release NULL (they were applied by releases that did not record it).
ALTER TABLE "session_janitor".migration
  ADD COLUMN IF NOT EXISTS breaking boolean NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS release text;
