/**
 * Leaving out the rows that another transaction holds, without row locks.
 *
 * `FOR UPDATE SKIP LOCKED` would be the usual way, but every row-locking clause needs UPDATE
 * privilege on the table, and the worker's role has only SELECT and DELETE on the sessions table
 * (sql/roles.sql: least privilege). So the purge's and the reaper's retry after a lock timeout
 * reads who holds a row from the row itself: a transaction that locks, updates or deletes a row
 * writes its xid into the xmax of the version everybody else still sees, and the statement's own
 * snapshot lists the transactions still in progress. A row whose xmax is one of them is held; a row
 * whose xmax is 0, or the xid of a transaction that has ended (our own aborted first attempt at the
 * range, a lock since released), is free and deleted.
 *
 * What this misses only makes the retry wait again, never deletes a wrong row: a lock taken by a
 * transaction that started after the snapshot, or a multixact xmax (several lockers at once), is not
 * recognised, so the DELETE waits for that row up to lock_timeout as the first attempt did.
 * pg_snapshot_xip gives 64-bit xids; xmax holds the low 32 bits.
 */
export const NOT_HELD = `xmax::text::bigint NOT IN (SELECT xip::text::bigint % 4294967296 FROM pg_snapshot_xip(pg_current_snapshot()) AS xip)`;
