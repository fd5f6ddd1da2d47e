/**
 * The latency guard's probe (tasks/latency-guard.ts): one tiny write, in autocommit, on a pooled
 * connection that keeps the server's synchronous_commit (never the tasks' asynchronous one), timed
 * by the client: a round trip plus a commit that waits for the WAL flush, as the auth service's
 * refreshes do. The WAL the janitor's batches wrote and not yet flushed is flushed by this commit
 * too, which is the point: its time is what any commit would feel right now.
 *
 * It must write a row: a transaction that only takes an xid, or writes nothing, commits without
 * flushing the WAL (RecordTransactionCommit), and would stay fast whatever the purge does.
 *
 * The slot is the backend's pid modulo 1024: probes of several runs or replicas at once run on
 * different backends, so they rarely wait for each other's row lock, and the table holds at most
 * 1024 rows (migration 5, fillfactor 50: the updates stay HOT).
 */
import { quote, type Statement } from './identifiers.ts';
import { OWN_SCHEMA } from './migrations.ts';

export const LATENCY_PROBE_TABLE = `${OWN_SCHEMA}.latency_probe`;

/**
 * $1: the slot (smallint), or NULL for the backend's own (pid modulo 1024). The row is locked first
 * with NOWAIT: a probe that had to wait for another transaction's lock on its row would time that
 * lock (up to lock_timeout), not a commit, and a baseline learnt from it made the guard inert; it
 * fails at once instead (55P03), and the probe takes another slot (tasks/latency-probe.ts).
 */
export const latencyProbe: Statement = {
  name: 'sj_latency_probe',
  text: `WITH target AS (SELECT coalesce($1::smallint, (pg_backend_pid() % 1024)::smallint) AS slot),
     locked AS (SELECT count(*) AS n FROM (SELECT 1 FROM ${quote(OWN_SCHEMA)}.latency_probe p, target WHERE p.slot = target.slot FOR UPDATE OF p NOWAIT) AS l)
INSERT INTO ${quote(OWN_SCHEMA)}.latency_probe AS p (slot, probed_at) SELECT target.slot, now() FROM target, locked
ON CONFLICT (slot) DO UPDATE SET probed_at = excluded.probed_at`,
};

/**
 * The auth service's writes to the sessions table so far (rows inserted plus rows updated, HOT or
 * not, since the statistics were reset), from the cumulative statistics, which every role may read:
 * the guard's sign that someone is there to be hurt. The janitor itself only deletes, so none of
 * this is its own. Each backend reports its counts when it goes idle, at most once a second, so the
 * figure lags the writes by about a second. NULL: the table is not there.
 *
 * Not in the timed probe: on PostgreSQL 13 and 14 the first statistics read of a transaction loads
 * the statistics collector's file, which would add its time to the commit's.
 *
 * $1: the table, schema-qualified and quoted (a regclass literal).
 */
export const sessionWrites: Statement = {
  name: 'sj_latency_session_writes',
  text: `SELECT (pg_stat_get_tuples_inserted(t) + pg_stat_get_tuples_updated(t))::float8 AS writes FROM to_regclass($1::text) AS t`,
};

/**
 * The transaction id the server will assign next (tasks/latency-guard.ts, XidWindow): every
 * writing transaction of every database takes one when it writes, and the figure moves at once
 * (the statistics lag by a second). Reading it takes none. xid8 as text: a float8 holds it exactly
 * up to 2^53, some nine thousand years of a million transactions a second.
 */
export const nextTransactionId: Statement = {
  name: 'sj_latency_next_xid',
  text: `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::float8 AS next_xid`,
};
