/**
 * The session settings of a task's connection (tasks/connection.ts), set when the task checks the
 * connection out and reset before it goes back to the pool.
 *
 * Asynchronous commit (JANITOR_PURGE_ASYNC_COMMIT, the default): a statement's commit does not wait
 * for its WAL to be flushed (nor for a synchronous standby). The rows are gone for every other
 * transaction at once; only their durability waits. A crash can lose the last few hundred
 * milliseconds of commits, and each task loses nothing by it (measured: docs/performance.md):
 *
 * - purge: the lost batches' rows come back, still expired, and the next run deletes them. A
 *   pg-boss job's completion is a synchronous commit later in the WAL, so a run reported complete
 *   was also flushed in full.
 * - reap: each lost commit is the delete of a range together with the move of the position past
 *   it (one statement). The WAL is replayed in order, so the position that survives is the last one
 *   flushed, and every range before it was flushed with it: the lost ranges are exactly those after
 *   the surviving position, and the next run deletes them again. Nothing is skipped; at most one
 *   range's count is missing from pass_deleted.
 * - revoke: the job is reported complete (the `{ revoked }` output producers wait for) by pg-boss's
 *   own transaction, which commits synchronously after revoke() returned, so its commit record lies
 *   later in the WAL than every delete of the job: a completed revocation was flushed in full. A
 *   crash before that loses the completion too, and pg-boss runs the job again (a job left active
 *   is retried when its heartbeat lapses: queues.ts); revoking again is idempotent. revoke() has no
 *   other caller than the job's handler (revoke-consumer.ts).
 */
export const ASYNC_COMMIT = 'SET synchronous_commit = off';
export const RESET_COMMIT = 'RESET synchronous_commit';
