/**
 * `session-janitor/client`: enqueue a revocation from another Node service, and optionally wait for
 * it (docs/CONTRACT.md, docs/producers.md).
 *
 *   import { enqueueRevocation, waitForRevocation } from 'session-janitor/client';
 *   const id = await enqueueRevocation(boss, { userId: 42, reason: 'password-changed' });
 *
 * The target is either
 * - a started PgBoss on the database (its own schema): the job is sent with boss.send, which applies
 *   the queue's settings and wakes the workers (NOTIFY); or
 * - a connection string, a pg.Pool or a pg.Client: the job is enqueued by the SQL function
 *   session_janitor.enqueue_revocation (session_janitor.enqueue_global_revocation for issuedBefore
 *   without userId), which needs only EXECUTE on it (no right on pg-boss's tables), and
 *   waitForRevocation reads session_janitor.revocation_status.
 *
 * The request is validated with the worker's own schema before anything is sent: an invalid one
 * throws InvalidRevokeRequestError and never reaches the queue.
 *
 * Dedupe: with `singletonKey`, a second request with the same key from the same database role
 * returns null and enqueues nothing, for as long as the first job is kept (see
 * db/sql/enqueue-revocation.ts); another role's key never collides with it. Both paths store the key
 * scoped by the role and use the same pg-boss throttle slot, so the SQL function and the client
 * dedupe against each other.
 *
 * This module is the package's public entry point: it imports no worker code that does I/O at load
 * (no configuration, no logger, no metrics).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { DEDUPE_SLOT_SECONDS, enqueueGlobalRevocationCall, enqueueRevocationCall, revocationStatusCall, scopedDedupeKey } from './db/sql/enqueue-revocation.ts';
import { QUEUES } from './queues.ts';
import { selectorKind, validateRevokeRequest, type RevokeIssue, type RevokeRequest } from './revoke-request.ts';

export { validateRevokeRequest };
export type { RevokeIssue, RevokeRequest, RevokeSelector, RevokeValidation } from './revoke-request.ts';

/** A pg.Pool or a connected pg.Client of the producer's own. */
export type Queryable = pg.Pool | pg.ClientBase;

/** Where the revocation goes: a started PgBoss, a connection string, or a pg pool or client. */
export type RevocationTarget = PgBoss | string | Queryable;

export interface EnqueueOptions {
  /** Drop duplicates: a second request with the same key returns null (1 to 255 characters). */
  readonly singletonKey?: string;
}

export interface WaitOptions {
  /**
   * Give up (RevocationTimeoutError) after this long; the job itself goes on. Default 5 minutes: a
   * healthy revocation takes seconds, while pg-boss retries a failing one for JANITOR_RETRY_WINDOW
   * (1 h by default) before it fails for good.
   */
  readonly timeoutMs?: number;
  /** Between two looks at the job. Default 500 ms. */
  readonly intervalMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * What a completed revocation reports: the sessions deleted by the attempt that completed (after a
 * retry, an earlier attempt's deletes are not counted: docs/producers.md).
 */
export interface RevocationOutput {
  readonly revoked: number;
}

export class InvalidRevokeRequestError extends Error {
  readonly issues: readonly RevokeIssue[];
  constructor(issues: readonly RevokeIssue[]) {
    super(`invalid RevokeRequest: ${issues.map((i) => i.message).join('; ')}`);
    this.name = 'InvalidRevokeRequestError';
    this.issues = issues;
  }
}

/** The job failed for good (an invalid payload, or every retry failed), or was cancelled or deleted. */
export class RevocationFailedError extends Error {
  readonly jobId: string;
  /** failed, cancelled, or missing (pg-boss deleted it, or it never existed). */
  readonly state: string;
  /** The job's output: `{ error: 'invalid_payload', issues }`, `{ error: 'revoke_failed', message }`, ... */
  readonly output: unknown;
  constructor(jobId: string, state: string, output: unknown) {
    super(`revocation job ${jobId} ${state === 'missing' ? 'was not found' : `ended ${state}`}${describeOutput(output)}`);
    this.name = 'RevocationFailedError';
    this.jobId = jobId;
    this.state = state;
    this.output = output;
  }
}

export class RevocationTimeoutError extends Error {
  readonly jobId: string;
  readonly state: string;
  constructor(jobId: string, state: string, timeoutMs: number) {
    super(`revocation job ${jobId} is still ${state} after ${timeoutMs} ms`);
    this.name = 'RevocationTimeoutError';
    this.jobId = jobId;
    this.state = state;
  }
}

/**
 * Validates and enqueues a revocation. Returns the job id, or null when `singletonKey` was already
 * used (nothing enqueued). Throws InvalidRevokeRequestError for an invalid request.
 */
export async function enqueueRevocation(target: RevocationTarget, request: RevokeRequest, options: EnqueueOptions = {}): Promise<string | null> {
  const validation = validateRevokeRequest(request);
  if (!validation.ok) throw new InvalidRevokeRequestError(validation.issues);
  const key = options.singletonKey;
  if (key !== undefined && (key.length === 0 || key.length > 255)) throw new RangeError('singletonKey must be 1 to 255 characters');

  if (isPgBoss(target)) {
    if (key === undefined) return target.send(QUEUES.revoke, validation.request);
    // The key as the SQL functions scope it, by this connection's role, so both paths dedupe alike.
    const { rows } = await target.getDb().executeSql(scopedDedupeKey.text, [key]);
    const singletonKey = (rows[0] as { key?: unknown } | undefined)?.key;
    if (typeof singletonKey !== 'string') throw new Error("could not scope the dedupe key by the connection's role");
    return target.send(QUEUES.revoke, validation.request, { singletonKey, singletonSeconds: DEDUPE_SLOT_SECONDS });
  }
  return withQueryable(target, async (db) => {
    // issuedBefore alone reaches every user: the function of its own, which needs its own grant.
    const call = selectorKind(validation.request) === 'issuedBefore' ? enqueueGlobalRevocationCall : enqueueRevocationCall;
    const { rows } = await db.query<{ id: string | null }>({ ...call, values: [JSON.stringify(validation.request), key ?? null] });
    return rows[0]?.id ?? null;
  });
}

/**
 * Polls the job until it completes (returns its output, `{ revoked }`) or ends otherwise (throws
 * RevocationFailedError with the job's output). A job in `retry` is waited for: pg-boss runs it again.
 */
export async function waitForRevocation(target: RevocationTarget, jobId: string, options: WaitOptions = {}): Promise<RevocationOutput> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  const intervalMs = options.intervalMs ?? 500;
  const deadline = performance.now() + timeoutMs;
  const poll = async (read: () => Promise<JobStatus | null>): Promise<RevocationOutput> => {
    for (;;) {
      options.signal?.throwIfAborted();
      const status = await read();
      if (status === null) throw new RevocationFailedError(jobId, 'missing', null);
      if (status.state === 'completed') return toOutput(jobId, status.output);
      if (status.state === 'failed' || status.state === 'cancelled') throw new RevocationFailedError(jobId, status.state, status.output);
      if (performance.now() >= deadline) throw new RevocationTimeoutError(jobId, status.state, timeoutMs);
      await sleep(intervalMs, undefined, options.signal ? { signal: options.signal } : {});
    }
  };

  if (isPgBoss(target)) {
    return poll(async () => {
      const [job] = await target.findJobs(QUEUES.revoke, { id: jobId });
      return job ? { state: job.state, output: job.output } : null;
    });
  }
  return withQueryable(target, (db) =>
    poll(async () => {
      const { rows } = await db.query<JobStatus>({ ...revocationStatusCall, values: [jobId] });
      return rows[0] ?? null;
    }),
  );
}

interface JobStatus {
  readonly state: string;
  readonly output: unknown;
}

function isPgBoss(target: RevocationTarget): target is PgBoss {
  return typeof target === 'object' && 'send' in target && typeof target.send === 'function' && 'findJobs' in target;
}

/** Runs fn on the target; a connection string gets a client of its own, closed afterwards. */
async function withQueryable<T>(target: string | Queryable, fn: (db: Queryable) => Promise<T>): Promise<T> {
  if (typeof target !== 'string') return fn(target);
  const client = new pg.Client({ connectionString: target, application_name: 'session-janitor-client' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function toOutput(jobId: string, output: unknown): RevocationOutput {
  if (typeof output === 'object' && output !== null && 'revoked' in output && typeof output.revoked === 'number') {
    return { revoked: output.revoked };
  }
  throw new RevocationFailedError(jobId, 'completed without a { revoked } output', output);
}

function describeOutput(output: unknown): string {
  if (typeof output !== 'object' || output === null) return '';
  if ('issues' in output && Array.isArray(output.issues)) {
    const messages = output.issues.map((i: unknown) => (typeof i === 'object' && i !== null && 'message' in i ? String(i.message) : String(i)));
    return `: invalid payload: ${messages.join('; ')}`;
  }
  if ('message' in output && typeof output.message === 'string') return `: ${output.message}`;
  return `: ${JSON.stringify(output)}`;
}
