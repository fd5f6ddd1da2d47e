-- session_janitor migration 5: the latency guard's probe row (src/tasks/latency-guard.ts)
-- Between batches the purge and the reaper time one tiny write here, committed with the server's own
-- synchronous_commit (what the auth service's commits get): its commit waits for the WAL flush that
-- every other commit waits for, the WAL of the janitor's batches included. A transaction that only
-- took an xid, or that wrote nothing, would commit without a flush and measure nothing.
-- One row per slot, slot = the probing backend's pid modulo 1024 (db/sql/latency-guard.ts): two
-- probes at once run on two backends, so they rarely update the same row, and the table never holds
-- more than 1024 rows. fillfactor 50 leaves room on each page for the updated row version, so the
-- updates stay HOT (no index entry) and the page prunes itself.
CREATE TABLE IF NOT EXISTS "session_janitor".latency_probe (
  slot      smallint    PRIMARY KEY,
  probed_at timestamptz NOT NULL
) WITH (fillfactor = 50);
COMMENT ON TABLE "session_janitor".latency_probe IS
  'session-janitor latency guard: one row per probing slot, rewritten by each probe; its commit time is what the auth service''s commits feel';
