/**
 * The consumer of `refresh-session.revoke`: other services' revocations (docs/CONTRACT.md).
 *
 * - perJobResults, so that each job gets its own disposition:
 *   - an invalid payload: `deadletter` with `{ error: 'invalid_payload', issues }`, at once and
 *     without retry (retrying cannot fix it), nothing deleted, outcome `rejected`;
 *   - done: `completed` with `{ revoked }`;
 *   - any other error (the database went away, a lock held for seconds): `failed`, which pg-boss
 *     treats like a throw (manager.js #settlePerJob -> #failWithOutputs without forceTerminal): the
 *     job is retried with the queue's backoff (doubling from JANITOR_RETRY_DELAY, for at least
 *     JANITOR_RETRY_WINDOW, 1 h by default: queues.ts) and goes to the dead-letter queue only once
 *     the retries are used up. The work already done stays done; the output of the attempt that
 *     completes counts that attempt's deletes only (docs/CONTRACT.md).
 * - batchSize 1 and localConcurrency JANITOR_REVOKE_CONCURRENCY: that many revocations at once per
 *   pod, each on its own connection of the worker's pool.
 * - Latency: the queue has `notify: true` and the worker listens (useListenNotify), so a job sent
 *   by boss.send or session_janitor.enqueue_revocation wakes a worker at once; the 0.5 s poll is the
 *   fallback when the LISTEN connection is down (pg-boss then polls at pollingIntervalSeconds).
 * - Shutdown: a revocation is short and bounded (100000 ids are 40 statements), so a running one
 *   is not interrupted by the worker's shutdown: pg-boss's graceful stop waits for it. Only
 *   job.signal stops it between statements (pg-boss gave up on the job: stop timeout, lost claim),
 *   and pg-boss then retries the job.
 *
 * One audit line per job at info: job id, selector kind, how many ids, reason, requestedBy, revoked,
 * seconds. Never the user ids or jtis themselves.
 */
import type { Job, JobResult, PgBoss } from 'pg-boss';
import { MAX_PARSED_JSON_CHARS } from '../db/bounded-json.ts';
import { safeErrorMessage } from '../db/errors.ts';
import { jobDataText } from '../db/sql/jobs.ts';
import { ISSUED_BEFORE_MAX_SKEW, freeDedupeKey, issuedBeforeTooLate } from '../db/sql/revocation-jobs.ts';
import type { Logger } from '../logger.ts';
import { QUEUES } from '../queues.ts';
import { idCount, selectorKind, validateRevokeRequest, type RevokeIssue, type RevokeRequest } from '../revoke-request.ts';
import type { TaskContext } from '../tasks/context.ts';
import { revoke } from '../tasks/revoke.ts';
import { instrumented } from './instrumented.ts';

const QUEUE = QUEUES.revoke;

/** The dead-letter output of an invalid payload (contract). */
export interface InvalidPayloadOutput {
  readonly error: 'invalid_payload';
  readonly issues: readonly RevokeIssue[];
}

/** The output stored on a job that failed for another reason (retried by pg-boss). */
export interface RevokeFailedOutput {
  readonly error: 'revoke_failed';
  readonly message: string;
}

export async function registerRevokeConsumer(boss: PgBoss, ctx: TaskContext, shutdown: AbortSignal, log: Logger): Promise<string> {
  const options = {
    perJobResults: true,
    batchSize: 1,
    localConcurrency: ctx.config.revokeConcurrency,
    pollingIntervalSeconds: 0.5,
    // With NOTIFY up, pg-boss otherwise polls a notify queue every 30 s, and a retry (a job whose
    // start_after is in the future) is found only by a poll: keep retries near their backoff.
    notifyPollingIntervalSeconds: 2,
  } as const;
  return boss.work(QUEUE, options, async (jobs: Job<unknown>[]): Promise<JobResult[]> => {
    if (shutdown.aborted) log.debug({ queue: QUEUE, jobs: jobs.length }, 'revocation fetched while shutting down: carried out all the same');
    return Promise.all(jobs.map((job) => handleRevokeJob(ctx, job, log)));
  });
}

/** Numbers written as integers, `4` or `4.0`: exactly the values JSON.parse returns for them. */
const INTEGER_TEXT = /^-?\d+(?:\.0+)?$/;

/**
 * The job's data with every number that is not written as an integer made NaN, which no id passes;
 * or, for large data that has not the bounded shape of a request, the database's issue with it.
 *
 * Why not job.data: node-pg parses the jsonb with JSON.parse, which rounds `3.99999999999999999`
 * (kept exactly by jsonb, from a raw insert or session_janitor.enqueue_revocation) to 4, and the
 * validation then saw user 4 (issue 17.9). So the consumer reads the job's stored text again (one
 * primary-key lookup) and parses it with a reviver that sees each number's source text (Node 21+).
 * Large data is not even parsed by pg-boss's fetch (db/bounded-json.ts), and is read here only when
 * the database finds it shaped like a request (db/sql/jobs.ts): 5 MB of small values would take the
 * heap past its limit, whoever sent them (a raw boss.send, an INSERT into the job table).
 */
async function exactJobData({ pool, config }: TaskContext, job: Job<unknown>): Promise<({ data: unknown } | { issue: RevokeIssue }) & { ageSeconds: number }> {
  const { rows } = await pool.query<{ data: string | null; issue: RevokeIssue | null; age_seconds: number }>({
    ...jobDataText(config.pgbossSchema),
    values: [QUEUE, job.id, MAX_PARSED_JSON_CHARS],
  });
  const row = rows[0];
  if (row === undefined) throw new Error(`job ${job.id} is no longer in pg-boss's job table`);
  const ageSeconds = Math.max(0, row.age_seconds);
  if (row.issue !== null) return { issue: row.issue, ageSeconds };
  if (row.data === null) return { data: null, ageSeconds };
  try {
    const data: unknown = JSON.parse(row.data, (_key: string, value: unknown, context?: { source?: string }) =>
      typeof value === 'number' && !INTEGER_TEXT.test(context?.source ?? '') ? Number.NaN : value,
    );
    return { data, ageSeconds };
  } catch (error) {
    // A payload nested thousands deep overflows the reviver's recursion (JSON.parse alone copes).
    // No valid request is nested more than two deep, so pg-boss's parse is refused all the same.
    if (error instanceof RangeError) return { data: job.data, ageSeconds };
    throw error;
  }
}

/** One job: never throws; its outcome is the returned disposition. */
export async function handleRevokeJob(ctx: TaskContext, job: Job<unknown>, log: Logger): Promise<JobResult> {
  const { metrics } = ctx;
  const started = performance.now();
  const seconds = () => Math.round(performance.now() - started) / 1000;
  const failed = (error: unknown, context: object, progress = { revoked: 0, batches: 0 }): JobResult => {
    const message = safeErrorMessage(error);
    log.error(
      { ...context, revokedSoFar: progress.revoked, batches: progress.batches, seconds: seconds(), outcome: 'failed', err: error },
      'revocation failed: pg-boss retries it with backoff, then dead-letters it',
    );
    const output: RevokeFailedOutput = { error: 'revoke_failed', message };
    return { id: job.id, status: 'failed', output };
  };

  const reject = async (issues: readonly RevokeIssue[]): Promise<JobResult> => {
    await releaseDedupeKey(ctx, job.id, log);
    metrics.jobs.inc({ queue: QUEUE, outcome: 'rejected' });
    metrics.jobDuration.observe({ queue: QUEUE }, seconds());
    log.warn(
      { queue: QUEUE, jobId: job.id, issues, outcome: 'rejected' },
      'revocation rejected: invalid payload, dead-lettered without retry, nothing deleted',
    );
    const output: InvalidPayloadOutput = { error: 'invalid_payload', issues };
    return { id: job.id, status: 'deadletter', output };
  };

  let read: ({ data: unknown } | { issue: RevokeIssue }) & { ageSeconds: number };
  try {
    read = await exactJobData(ctx, job);
  } catch (error) {
    metrics.jobs.inc({ queue: QUEUE, outcome: 'failed' });
    return failed(error, { queue: QUEUE, jobId: job.id, attempt: job.retryCount + 1 });
  }
  if ('issue' in read) return reject([read.issue]);
  const validation = validateRevokeRequest(read.data);
  if (!validation.ok) return reject(validation.issues);

  const request = validation.request;
  const audit = {
    queue: QUEUE,
    jobId: job.id,
    attempt: job.retryCount + 1,
    selector: selectorKind(request),
    ids: idCount(request),
    ...(request.issuedBefore === undefined ? {} : { issuedBefore: request.issuedBefore }),
    reason: request.reason,
    requestedBy: request.requestedBy ?? null,
  };
  let late: RevokeIssue[];
  try {
    late = await futureInstantIssues(ctx, request);
  } catch (error) {
    metrics.jobs.inc({ queue: QUEUE, outcome: 'failed' });
    return failed(error, audit);
  }
  if (late.length > 0) return reject(late);
  let progress = { revoked: 0, batches: 0 };
  try {
    const { revoked } = await instrumented(metrics, QUEUE, () => revoke(ctx, request, { signal: job.signal, onProgress: (p) => (progress = p) }));
    // Enqueue to completion: the job's age when read (the database's clock) plus this pod's own
    // monotonic time since; pg-boss writes completed_on a moment later. Observed here, by the one
    // pod that completes the job, so a sum over pods counts each revocation once.
    const latency = read.ageSeconds + seconds();
    metrics.revocationLatency.observe(latency);
    log.info({ ...audit, revoked, batches: progress.batches, seconds: seconds(), latencySeconds: latency, outcome: 'completed' }, 'revocation done');
    return { id: job.id, status: 'completed', output: { revoked } };
  } catch (error) {
    return failed(error, audit, progress);
  }
}

/**
 * An issuedBefore later than the database's now() plus ISSUED_BEFORE_MAX_SKEW: sessions that do not
 * exist yet cannot be revoked, and such an instant (9999-12-31, now + 1 year) would reach every
 * session. The SQL functions refuse it at enqueue; a job sent past them (boss.send) is checked here,
 * against the database clock, before anything is deleted.
 */
async function futureInstantIssues(ctx: TaskContext, request: RevokeRequest): Promise<RevokeIssue[]> {
  if (request.issuedBefore === undefined) return [];
  const { rows } = await ctx.pool.query<{ too_late: boolean }>({ ...issuedBeforeTooLate, values: [request.issuedBefore] });
  if (!rows[0]?.too_late) return [];
  const message = `issuedBefore must not be later than the database's now() plus ${ISSUED_BEFORE_MAX_SKEW} of clock skew: sessions that do not exist yet cannot be revoked`;
  return [{ path: 'issuedBefore', message }];
}

/**
 * An invalid request does not hold its dedupe key (db/sql/revocation-jobs.ts). Should the database
 * refuse, the job is dead-lettered all the same and the key stays taken: the producer can see why
 * with revocation_by_key and use another key.
 */
async function releaseDedupeKey(ctx: TaskContext, jobId: string, log: Logger): Promise<void> {
  try {
    await ctx.pool.query({ ...freeDedupeKey(ctx.config.pgbossSchema), values: [QUEUE, jobId] });
  } catch (error) {
    log.warn({ queue: QUEUE, jobId, err: error }, 'could not free the dedupe key of an invalid revocation');
  }
}
