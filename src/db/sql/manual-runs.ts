/**
 * Manual runs (`session-janitor purge-expired`, `reap-idle`) in the job history of their queue.
 *
 * The scheduled runs are recorded by pg-boss as jobs; the last-success gauge, the stall alerts and
 * `status` read that history. A manual run is recorded there too, as a job of its own: data
 * `{"manual": true, "deleted": n}`, its start and end from the database clock. It is inserted by the
 * command rather than sent and worked through pg-boss, so a manual run never waits for the queue's
 * exclusive slot, which a stuck or retrying scheduled run holds (the very incident in which an
 * operator purges by hand), and never takes it from the next tick: its row has the policy
 * `standard`, which pg-boss's unique index of an exclusive queue does not cover.
 *
 * The row is inserted `active` when the run starts, and every committed batch adds its rows to
 * data.deleted as it commits (and refreshes heartbeat_on), so a run that fails, loses its connection
 * or is killed with -9 has still recorded what it deleted. At the end the row becomes `completed`
 * with the run's output, or `failed` with the error. A run killed before it could say so stays
 * `active` until pg-boss's supervisor finds its heartbeat stale and fails it (retry_limit 0 and no
 * dead letter: a manual run is never retried). Retention (the queue's deletion_seconds) removes the
 * row like any other.
 *
 * Its rows reach `session_janitor_sessions_deleted_total` through a worker: a one-shot process ends
 * before any scrape, so it cannot be counted where it ran. The gauge refresh of each worker claims
 * the rows recorded since the last claim (data.countedRows), atomically (a row lock), so the rows
 * of a run are counted once in the cluster, while it runs and after it was killed alike; a finished
 * run's row then gains `"counted": true`. Rows written by earlier versions (recorded at the end,
 * with the output's `deleted`) are counted the same way.
 *
 * These statements write pg-boss's table directly: its columns are those of the pinned pg-boss
 * (package.json), and test/monitoring/manual-runs.test.ts fails when they change.
 */
import { quote, type Statement } from './identifiers.ts';

/**
 * $1 queue, $2 heartbeat seconds. Returns the job's id; no row when the queue is not installed.
 */
export function startManualRun(pgbossSchema: string): Statement {
  const schema = quote(pgbossSchema);
  return {
    name: `sj_start_manual_run_${pgbossSchema}`.slice(0, 63),
    text: `INSERT INTO ${schema}.job (name, data, state, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds,
                       heartbeat_seconds, heartbeat_on, dead_letter, start_after, created_on, started_on, keep_until)
SELECT q.name, '{"manual": true, "deleted": 0}'::jsonb, 'active', 'standard', 0, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.expire_seconds, q.deletion_seconds,
       $2::integer, now(), NULL, now(), now(), now(), now() + make_interval(secs => q.retention_seconds)
  FROM ${schema}.queue AS q
 WHERE q.name = $1
RETURNING id`,
  };
}

/** $1 queue, $2 job id, $3 the rows deleted so far (every committed batch). */
export function manualRunProgress(pgbossSchema: string): Statement {
  return {
    name: `sj_manual_run_progress_${pgbossSchema}`.slice(0, 63),
    text: `UPDATE ${quote(pgbossSchema)}.job
   SET data = jsonb_set(data, '{deleted}', to_jsonb($3::bigint)), heartbeat_on = now()
 WHERE name = $1 AND id = $2::uuid AND state = 'active'`,
  };
}

/**
 * $1 queue, $2 job id, $3 'completed' or 'failed', $4 output (jsonb text), $5 rows deleted. Also
 * over a row that the supervisor failed meanwhile (a stall longer than the heartbeat): the run did
 * finish, and says how.
 */
export function finishManualRun(pgbossSchema: string): Statement {
  const schema = quote(pgbossSchema);
  return {
    name: `sj_finish_manual_run_${pgbossSchema}`.slice(0, 63),
    text: `UPDATE ${schema}.job
   SET state = $3::text::${schema}.job_state, completed_on = now(), output = $4::jsonb,
       data = jsonb_set(data, '{deleted}', to_jsonb($5::bigint))
 WHERE name = $1 AND id = $2::uuid AND state IN ('active', 'failed')`,
  };
}

/** What a manual run's row has deleted: data.deleted, or (rows of earlier versions) its output's. */
const DELETED = `coalesce((j.data->>'deleted')::bigint, (j.output->>'deleted')::bigint, 0)`;
/** What of it a worker has counted: all once `counted` is set, else data.countedRows. */
const COUNTED = `CASE WHEN j.data ? 'counted' THEN ${DELETED} ELSE coalesce((j.data->>'countedRows')::bigint, 0) END`;

/**
 * Claims the rows of the manual runs of queues $1 (text[]) that no worker has counted yet, and
 * returns each run's increment. Under READ COMMITTED a second worker's FOR UPDATE waits for the
 * first claim, then re-reads the row, so what it returns was not counted by the first: each row
 * is counted once in the cluster. A finished run (completed or failed) is marked `counted`, and
 * never read again.
 */
export function claimManualRuns(pgbossSchema: string): Statement {
  const schema = quote(pgbossSchema);
  return {
    name: `sj_claim_manual_runs_${pgbossSchema}`.slice(0, 63),
    text: `WITH due AS (
  SELECT j.id, j.name, ${DELETED} AS deleted, ${COUNTED} AS counted, j.state <> 'active' AS finished
    FROM ${schema}.job j
   WHERE j.name = ANY($1::text[]) AND j.data @> '{"manual": true}'::jsonb AND NOT j.data ? 'counted'
     AND j.state IN ('active', 'completed', 'failed')
     FOR UPDATE OF j
), claimed AS (
  UPDATE ${schema}.job j
     SET data = j.data || jsonb_build_object('countedRows', due.deleted)
                       || CASE WHEN due.finished THEN '{"counted": true}'::jsonb ELSE '{}'::jsonb END
    FROM due
   WHERE j.name = due.name AND j.id = due.id AND (due.deleted > due.counted OR due.finished)
  RETURNING j.name, (due.deleted - due.counted)::float8 AS deleted
)
SELECT name, deleted FROM claimed WHERE deleted > 0`,
  };
}
