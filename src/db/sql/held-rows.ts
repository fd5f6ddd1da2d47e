/**
 * Leaving out the rows that another transaction holds, without row locks: the purge's and the
 * reaper's first retry after a lock timeout (tasks/held-rows.ts).
 *
 * `FOR UPDATE SKIP LOCKED` would be the usual way, but every row-locking clause needs UPDATE
 * privilege on the table, and the worker's role has only SELECT and DELETE on the sessions table
 * (sql/roles.sql: least privilege).
 *
 * NOT_HELD, the first retry, reads who holds a row from the row itself: a transaction that locks,
 * updates or deletes a row writes its xid into the xmax of the version everybody else still sees,
 * and the statement's own snapshot lists the transactions still in progress. A row whose xmax is
 * one of them is held; a row whose xmax is 0, or the xid of a transaction that has ended (our own
 * aborted first attempt at the range, a lock since released), is free and deleted. It misses a row
 * whose xmax is not a top-level xid in progress: a lock taken inside a savepoint (a
 * subtransaction's xid, which pg_snapshot_xip does not list), several lockers at once (a
 * MultiXactId), or a lock taken after the snapshot. Then the DELETE waits for that row up to
 * lock_timeout again, and the caller falls back to deleting the range's ids (read without locks,
 * then deleted by id with the condition re-checked: purgeIds, reapIds). Either way a wrong row is
 * never deleted.
 * pg_snapshot_xip gives 64-bit xids; xmax holds the low 32 bits.
 */
export const NOT_HELD = `xmax::text::bigint NOT IN (SELECT xip::text::bigint % 4294967296 FROM pg_snapshot_xip(pg_current_snapshot()) AS xip)`;
