/**
 * Manual runs (`session-janitor purge-expired`, `reap-idle`) in the job history of their queue.
 *
 * The scheduled runs are recorded by pg-boss as completed jobs; the last-success gauge, the stall
 * alerts and `status` read that history. A manual run is recorded there too, after it ends, as a
 * completed job of its own: data `{"manual": true}`, the run's output, its start and end from the
 * database clock. It is inserted as `completed` rather than sent and worked through pg-boss, so a
 * manual run never waits for the queue's exclusive slot, which a stuck or retrying scheduled run holds
 * (the very incident in which an operator purges by hand), and never takes it from the next tick.
 * pg-boss's unique index of an exclusive queue covers only the states up to `active`: a completed row
 * cannot collide with it. Retention (the queue's deletion_seconds) removes the row like any other.
 *
 * Its rows reach `session_janitor_sessions_deleted_total` through a worker: a one-shot process ends
 * before any scrape, so it cannot be counted where it ran. The first worker to claim the row (data
 * gains `"counted": true`, atomically, so one worker in the cluster counts it once) adds its output's
 * `deleted` to its own counter.
 *
 * These statements write pg-boss's table directly: its columns are those of the pinned pg-boss
 * (package.json), and test/monitoring/manual-runs.test.ts fails when they change.
 */
import { quote, type Statement } from './identifiers.ts';

/** $1 queue, $2 output (jsonb text), $3 the run's length in seconds. Returns the job's id; no row when the queue is not installed. */
export function recordManualRun(pgbossSchema: string): Statement {
  const schema = quote(pgbossSchema);
  const started = 'now() - make_interval(secs => $3::float8)';
  return {
    name: `sj_record_manual_run_${pgbossSchema}`.slice(0, 63),
    text: `INSERT INTO ${schema}.job (name, data, state, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds,
                       heartbeat_seconds, dead_letter, start_after, created_on, started_on, completed_on, keep_until, output)
SELECT q.name, '{"manual": true}'::jsonb, 'completed', q.policy, q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.expire_seconds, q.deletion_seconds,
       q.heartbeat_seconds, q.dead_letter, ${started}, ${started}, ${started}, now(), now() + make_interval(secs => q.retention_seconds), $2::jsonb
  FROM ${schema}.queue AS q
 WHERE q.name = $1
RETURNING id`,
  };
}

/**
 * Claims the manual runs of queues $1 (text[]) that no worker has counted yet, and returns each with
 * its deleted rows. Under READ COMMITTED a second worker's UPDATE of the same row waits for the
 * first, re-checks the condition, and skips it.
 */
export function claimManualRuns(pgbossSchema: string): Statement {
  return {
    name: `sj_claim_manual_runs_${pgbossSchema}`.slice(0, 63),
    text: `UPDATE ${quote(pgbossSchema)}.job
   SET data = data || '{"counted": true}'::jsonb
 WHERE name = ANY($1::text[]) AND state = 'completed' AND data @> '{"manual": true}'::jsonb AND NOT data ? 'counted'
RETURNING name, coalesce((output->>'deleted')::bigint, 0)::float8 AS deleted`,
  };
}
