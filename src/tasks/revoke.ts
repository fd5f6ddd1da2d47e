/**
 * Revoke sessions: carry out one valid RevokeRequest (../revoke-request.ts), in short statements
 * (see db/sql/revoke.ts for their shape), and report how many sessions went.
 *
 * - userId (with exceptJti or issuedBefore), userIds: the user_id index, IDS_PER_STATEMENT users a
 *   statement (deduplicated and sorted, so chunks and locks follow id order).
 * - jtis: the unique jti index, IDS_PER_STATEMENT jtis a statement.
 * - issuedBefore alone: created_at has no index, so the primary key is walked in ranges from the
 *   smallest to the largest id found at the start (sessions created later are newer than any
 *   sensible instant, and a one-shot job cannot promise more), the range width adapting to
 *   JANITOR_BATCH_TARGET_MS within JANITOR_BATCH_MIN_SIZE..JANITOR_BATCH_MAX_SIZE ids.
 *
 * Never skipping a row: each statement waits for row locks up to lock_timeout. On a lock timeout
 * (55P03) or a deadlock (40P01) the same statement is retried after a short, growing, jittered
 * sleep, a bounded number of times; then the error is thrown and the job fails, and pg-boss retries
 * the job with its own backoff (the work done so far stays done: revoking is idempotent). Why not
 * wait without a limit: while a statement waits for one row it holds the locks of the rows before
 * it, so the auth service's refreshes of those sessions would wait too.
 *
 * A statement timeout (57014) halves the chunk (or range) and retries; at one id it is thrown.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { revokeByJtis, revokeByUsers, revokeIdRange, sessionIdBounds } from '../db/sql/revoke.ts';
import type { Statement } from '../db/sql/identifiers.ts';
import type { RevokeRequest } from '../revoke-request.ts';
import { AdaptiveBatchSize } from './batching.ts';
import type { TaskContext } from './context.ts';

/** Users or jtis per statement: 1000 users ran at 0.66 of one statement's speed, p50 77 ms (notes). */
export const IDS_PER_STATEMENT = 1000;

export interface LockRetryPolicy {
  /** Tries of one statement in all (the first included) before the error is thrown. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * 8 tries with sleeps of about 50, 100, 200, 400, 800, 1000, 1000 ms between them: with the default
 * lock_timeout of 200 ms a statement keeps trying for about 5 s, far beyond any healthy refresh
 * transaction, before the job is failed and left to pg-boss's retries (by default after about
 * 15 s, 30 s, 60 s: JANITOR_RETRY_DELAY).
 */
export const DEFAULT_LOCK_RETRY: LockRetryPolicy = { attempts: 8, baseDelayMs: 50, maxDelayMs: 1000 };

export type RetryCause = 'lock-timeout' | 'deadlock' | 'statement-timeout';

export interface RevokeProgress {
  readonly revoked: number;
  readonly batches: number;
}

export interface RevokeOptions {
  /** Aborted when pg-boss gives up on the job: the revocation stops between statements. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: RevokeProgress) => void;
  /** Called before each retry of a statement. */
  readonly onRetry?: (retry: { cause: RetryCause; attempt: number; delayMs: number }) => void;
  readonly lockRetry?: LockRetryPolicy;
}

export interface RevokeOutput {
  revoked: number;
}

export async function revoke(ctx: TaskContext, request: RevokeRequest, options: RevokeOptions = {}): Promise<RevokeOutput> {
  const run = new Revocation(ctx, options);
  if (request.userIds !== undefined) {
    await run.byUsers(uniqueSorted(request.userIds), null, null);
  } else if (request.jtis !== undefined) {
    await run.byJtis(uniqueSorted(request.jtis.map((jti) => jti.toLowerCase())));
  } else if (request.userId !== undefined) {
    await run.byUsers([request.userId], request.exceptJti?.toLowerCase() ?? null, request.issuedBefore ?? null);
  } else {
    await run.byIdRanges(request.issuedBefore);
  }
  return { revoked: run.revoked };
}

class Revocation {
  revoked = 0;
  batches = 0;
  readonly #ctx: TaskContext;
  readonly #options: RevokeOptions;
  readonly #policy: LockRetryPolicy;

  constructor(ctx: TaskContext, options: RevokeOptions) {
    this.#ctx = ctx;
    this.#options = options;
    this.#policy = options.lockRetry ?? DEFAULT_LOCK_RETRY;
  }

  async byUsers(userIds: readonly number[], exceptJti: string | null, issuedBefore: string | null): Promise<void> {
    const statement = revokeByUsers(this.#ctx.config.sessionTable);
    await this.#chunked(userIds, (chunk) => this.#statement(statement, [chunk, exceptJti, issuedBefore]));
  }

  async byJtis(jtis: readonly string[]): Promise<void> {
    const statement = revokeByJtis(this.#ctx.config.sessionTable);
    await this.#chunked(jtis, (chunk) => this.#statement(statement, [chunk]));
  }

  async byIdRanges(issuedBefore: string): Promise<void> {
    const { pool, config, metrics } = this.#ctx;
    const { rows } = await pool.query<{ lo: number | null; hi: number | null }>(sessionIdBounds(config.sessionTable));
    const lo = rows[0]?.lo ?? null;
    const hi = rows[0]?.hi ?? null;
    if (lo === null || hi === null) return;
    const statement = revokeIdRange(config.sessionTable);
    const width = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.batchMaxSize, config.batchTargetMs);
    for (let lower = lo; lower <= hi; ) {
      this.#throwIfAborted();
      const upper = Math.min(lower + width.size, hi + 1);
      const started = performance.now();
      try {
        await this.#statement(statement, [lower, upper, issuedBefore]);
      } catch (error) {
        if (sqlState(error) === SQLSTATE.queryCanceled && !width.atMinimum && !this.#aborted) {
          metrics.errors.inc({ kind: 'batch-timeout' });
          this.#options.onRetry?.({ cause: 'statement-timeout', attempt: 1, delayMs: 0 });
          width.timedOut();
          continue;
        }
        throw error;
      }
      // The ids scanned, not the rows deleted, teach the width: the scan is most of the cost.
      width.record(upper - lower, performance.now() - started);
      lower = upper;
    }
  }

  /** Runs chunks of at most IDS_PER_STATEMENT items, halving the chunk after a statement timeout. */
  async #chunked<T>(items: readonly T[], run: (chunk: T[]) => Promise<void>): Promise<void> {
    let size = IDS_PER_STATEMENT;
    for (let i = 0; i < items.length; ) {
      this.#throwIfAborted();
      const chunk = items.slice(i, i + size);
      try {
        await run(chunk);
      } catch (error) {
        if (sqlState(error) === SQLSTATE.queryCanceled && size > 1 && !this.#aborted) {
          this.#ctx.metrics.errors.inc({ kind: 'batch-timeout' });
          this.#options.onRetry?.({ cause: 'statement-timeout', attempt: 1, delayMs: 0 });
          size = Math.max(1, Math.floor(size / 2));
          continue;
        }
        throw error;
      }
      i += chunk.length;
    }
  }

  /** One delete statement, retried after lock timeouts and deadlocks; counts what it deleted. */
  async #statement(statement: Statement, values: unknown[]): Promise<void> {
    const { pool, metrics } = this.#ctx;
    for (let attempt = 1; ; attempt += 1) {
      const started = performance.now();
      try {
        const { rows } = await pool.query<{ revoked: number }>({ ...statement, values });
        const revoked = rows[0]?.revoked ?? 0;
        this.revoked += revoked;
        this.batches += 1;
        metrics.sessionsDeleted.inc({ reason: 'revoked' }, revoked);
        this.#options.onProgress?.({ revoked: this.revoked, batches: this.batches });
        return;
      } catch (error) {
        const code = sqlState(error);
        const cause: RetryCause | null = code === SQLSTATE.lockNotAvailable ? 'lock-timeout' : code === SQLSTATE.deadlockDetected ? 'deadlock' : null;
        if (cause === null || attempt >= this.#policy.attempts || this.#aborted) throw error;
        metrics.errors.inc({ kind: cause === 'lock-timeout' ? 'lock-timeout' : 'database' });
        const delayMs = backoff(this.#policy, attempt);
        this.#options.onRetry?.({ cause, attempt, delayMs });
        this.#ctx.log.debug({ cause, attempt, delayMs }, 'revocation statement retried');
        await sleep(delayMs, undefined, this.#options.signal ? { signal: this.#options.signal } : {});
      } finally {
        metrics.batchDuration.observe({ task: 'revoke' }, (performance.now() - started) / 1000);
      }
    }
  }

  get #aborted(): boolean {
    return this.#options.signal?.aborted ?? false;
  }

  #throwIfAborted(): void {
    this.#options.signal?.throwIfAborted();
  }
}

/** Exponential from baseDelayMs, capped, with jitter (50-100 %) so that retries do not march in step. */
function backoff(policy: LockRetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

function uniqueSorted<T extends number | string>(items: readonly T[]): T[] {
  return [...new Set(items)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
