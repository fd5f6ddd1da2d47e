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

export const latencyProbe: Statement = {
  name: 'sj_latency_probe',
  text: `INSERT INTO ${quote(OWN_SCHEMA)}.latency_probe AS p (slot, probed_at) VALUES ((pg_backend_pid() % 1024)::smallint, now())
ON CONFLICT (slot) DO UPDATE SET probed_at = excluded.probed_at`,
};
