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
 *
 * The statements run in the batch engine's loop (tasks/engine.ts), a statement a batch; this file
 * says which statements, and when a failed one is tried again.
 *
 * Connections: a revocation works on a pooled connection of its own for the job (tasks/connection.ts),
 * whose commits are asynchronous (JANITOR_PURGE_ASYNC_COMMIT, the default; why a completed
 * revocation is durable all the same: db/sql/session.ts). A request of
 * more than one statement also takes a second connection (at most LANES in all) when the pool has
 * one free at once (the engine's 'spare' lanes): the two take the next chunk (or range) in turn
 * from the same list, so they never work on the same users, jtis or ids, and each statement still
 * locks its rows in id order. A single DELETE uses one core of the server; two connections on
 * disjoint chunks use two (docs/performance.md). The second connection never makes anybody wait:
 * it is not taken when another task waits for the pool, and it is given back, between two
 * statements, as soon as one does. A lane that fails (after its retries) stops the others before
 * their next statement; the job then fails with that error and pg-boss retries it (what was done
 * stays done).
 */
import type pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { revokeByJtis, revokeByUsers, revokeIdRange, sessionIdBounds } from '../db/sql/revoke.ts';
import type { Statement } from '../db/sql/identifiers.ts';
import type { RevokeRequest } from '../revoke-request.ts';
import { AdaptiveBatchSize } from './batching.ts';
import type { TaskContext } from './context.ts';
import { deletedRowsCounter, LaneDriver, type BatchStep, type Lane, type LaneScope } from './engine.ts';

/** Users or jtis per statement at most (docs/performance.md: measured from 500 to 5000). */
export const IDS_PER_STATEMENT = 2500;

/** Connections one revocation works on at most (docs/performance.md). */
export const LANES = 2;

export interface LockRetryPolicy {
  /** Tries of one statement in all (the first included) before the error is thrown. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * 8 tries with sleeps of about 50, 100, 200, 400, 800, 1000, 1000 ms between them: with the default
 * lock_timeout of 200 ms a statement keeps trying for about 5 s, far beyond any healthy refresh
 * transaction, before the job is failed and left to pg-boss's retries (the first about
 * JANITOR_RETRY_DELAY later, each next one twice as long, for at least JANITOR_RETRY_WINDOW:
 * queues.ts).
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
  /** Users or jtis per statement (IDS_PER_STATEMENT): for the benchmark and tests. */
  readonly idsPerStatement?: number;
  /** Connections at most (LANES): for the benchmark and tests. */
  readonly lanes?: number;
}

export interface RevokeOutput {
  revoked: number;
}

export async function revoke(ctx: TaskContext, request: RevokeRequest, options: RevokeOptions = {}): Promise<RevokeOutput> {
  const { config } = ctx;
  const table = config.sessionTable;
  const chunks = <T extends number | string>(items: readonly T[]) =>
    new Chunks(uniqueSorted(items), options.idsPerStatement ?? IDS_PER_STATEMENT, maxLanes(options));
  const byUsers = (userIds: readonly number[], exceptJti: string | null, issuedBefore: string | null) => {
    const work = chunks(userIds);
    const values = (chunk: number[]) => [chunk, exceptJti, issuedBefore, config.batchMaxSize];
    return run(ctx, { work, statement: revokeByUsers(table), values, untilNone: true, size: work.size }, options);
  };
  if (request.userIds !== undefined) return byUsers(request.userIds, null, null);
  if (request.userId !== undefined) return byUsers([request.userId], request.exceptJti?.toLowerCase() ?? null, request.issuedBefore ?? null);
  if (request.jtis !== undefined) {
    const work = chunks(request.jtis.map((jti) => jti.toLowerCase()));
    return run(ctx, { work, statement: revokeByJtis(table), values: (chunk: string[]) => [chunk], untilNone: false, size: work.size }, options);
  }
  const { issuedBefore } = request;
  const { rows } = await ctx.pool.query<{ lo: number | null; hi: number | null }>(sessionIdBounds(table));
  const lo = rows[0]?.lo ?? null;
  const hi = rows[0]?.hi ?? null;
  if (lo === null || hi === null) return { revoked: 0 };
  const statements: RequestStatements<IdRange> = {
    work: new IdRanges(lo, hi),
    statement: revokeIdRange(table),
    values: (range) => [range.lower, range.upper, issuedBefore],
    untilNone: false,
    size: { initial: config.batchSize, min: config.batchMinSize, max: config.batchMaxSize },
  };
  return run(ctx, statements, options);
}

/**
 * One request's statements: the units of work (chunks of users or jtis, or id ranges) the lanes
 * take in turn from one list, and the statement each unit runs.
 */
interface RequestStatements<W> {
  readonly work: WorkList<W>;
  readonly statement: Statement;
  readonly values: (unit: W) => unknown[];
  /**
   * A unit's statement deletes at most a cap of rows (a user's sessions): it runs again until one
   * deletes nothing. Not until one deletes fewer than the cap: rows another transaction deleted
   * meanwhile (a purge) make a capped statement delete fewer, with more rows of the unit still there.
   */
  readonly untilNone: boolean;
  /** A lane's adaptive size (users, jtis or ids a statement). */
  readonly size: { readonly initial: number; readonly min: number; readonly max: number };
}

/** Runs the statements in the batch engine's loop, a statement a batch. */
async function run<W>(ctx: TaskContext, statements: RequestStatements<W>, options: RevokeOptions): Promise<RevokeOutput> {
  const { config } = ctx;
  const { work, size } = statements;
  const driver = new LaneDriver<LaneScope>(
    ctx,
    {
      task: 'revoke',
      lanes: maxLanes(options),
      extraLanes: 'spare',
      moreWork: () => work.more(),
      // A lane takes its first unit as it opens: the first lane's, before the engine asks
      // whether work is left for another.
      openLane: (_laneId, client) => {
        const first = work.take(size.initial);
        return Promise.resolve(first === undefined ? null : new RevocationLane(ctx, client, statements, first, options));
      },
      size: () => new AdaptiveBatchSize(size.initial, size.min, size.max, config.batchTargetMs),
      scope: () => ({ waits: { ms: 0 } }),
      before: () => Promise.resolve(options.signal?.aborted === true ? 'shutdown' : null),
      countDeleted: deletedRowsCounter(ctx, 'revoked'),
    },
    options.onProgress ? { onProgress: (p) => options.onProgress?.({ revoked: p.deleted, batches: p.batches }) } : {},
  );
  await driver.run();
  // pg-boss gave up on the job: it fails (and is retried), with what was done so far done.
  if (driver.stoppedBy === 'shutdown') options.signal?.throwIfAborted();
  return { revoked: driver.deleted };
}

const maxLanes = (options: RevokeOptions) => Math.max(1, options.lanes ?? LANES);

/** The units of one request, which the lanes take in turn. */
interface WorkList<W> {
  /** The next unit of at most `limit` items (or ids), or undefined: none left. */
  take(limit: number): W | undefined;
  /** Whether take() would return a unit now. */
  more(): boolean;
  /** The unit's first `limit` items (or ids), and the rest (undefined: none). */
  split(unit: W, limit: number): readonly [W, W | undefined];
  /** What a lane's adaptive size learns from a unit: 0 for a chunk, whose size only a statement timeout changes. */
  covered(unit: W): number;
}

/**
 * Chunks of at most maxSize items, in order. More than one chunk: their number is rounded up to a
 * multiple of the lanes, all of (nearly) the same size, so that the lanes end together rather than
 * one of them doing the last chunk alone. A lane whose statement timed out takes smaller ones.
 */
class Chunks<T> implements WorkList<T[]> {
  #next = 0;
  readonly #items: readonly T[];
  readonly #size: number;

  constructor(items: readonly T[], maxSize: number, lanes: number) {
    this.#items = items;
    const max = Math.max(1, maxSize);
    const chunks = Math.ceil(items.length / max);
    this.#size = chunks <= 1 ? max : Math.ceil(items.length / (Math.ceil(chunks / lanes) * lanes));
  }

  get size() {
    return { initial: this.#size, min: 1, max: this.#size };
  }

  take(limit: number): T[] | undefined {
    if (this.#next >= this.#items.length) return undefined;
    const chunk = this.#items.slice(this.#next, this.#next + Math.min(limit, this.#size));
    this.#next += chunk.length;
    return chunk;
  }

  more(): boolean {
    return this.#next < this.#items.length;
  }

  split(chunk: T[], limit: number): readonly [T[], T[] | undefined] {
    return chunk.length <= limit ? [chunk, undefined] : [chunk.slice(0, limit), chunk.slice(limit)];
  }

  covered(): number {
    return 0;
  }
}

interface IdRange {
  readonly lower: number;
  readonly upper: number;
}

/**
 * Primary-key ranges [lower, upper) from lo to hi, as wide as the lane's size (in ids, not rows):
 * the ids scanned, not the rows deleted, teach the width, the scan being most of the cost.
 */
class IdRanges implements WorkList<IdRange> {
  #lower: number;
  readonly #hi: number;

  constructor(lo: number, hi: number) {
    this.#lower = lo;
    this.#hi = hi;
  }

  take(limit: number): IdRange | undefined {
    if (this.#lower > this.#hi) return undefined;
    const range = { lower: this.#lower, upper: Math.min(this.#lower + limit, this.#hi + 1) };
    this.#lower = range.upper;
    return range;
  }

  more(): boolean {
    return this.#lower <= this.#hi;
  }

  split(range: IdRange, limit: number): readonly [IdRange, IdRange | undefined] {
    const end = range.lower + limit;
    return end >= range.upper
      ? [range, undefined]
      : [
          { lower: range.lower, upper: end },
          { lower: end, upper: range.upper },
        ];
  }

  covered(range: IdRange): number {
    return range.upper - range.lower;
  }
}

/**
 * A lane of a revocation: one statement a batch, on the unit it took (or the part of it its size
 * allows after a statement timeout), then on the next unit it takes from the request's list.
 */
class RevocationLane<W> implements Lane<LaneScope> {
  readonly #ctx: TaskContext;
  readonly #client: pg.PoolClient;
  readonly #statements: RequestStatements<W>;
  readonly #options: RevokeOptions;
  readonly #policy: LockRetryPolicy;
  #unit: W | undefined;
  /** The unit's last statement deleted rows (untilNone): the next one checks whether any are left. */
  #checking = false;

  constructor(ctx: TaskContext, client: pg.PoolClient, statements: RequestStatements<W>, first: W, options: RevokeOptions) {
    this.#ctx = ctx;
    this.#client = client;
    this.#statements = statements;
    this.#unit = first;
    this.#options = options;
    this.#policy = options.lockRetry ?? DEFAULT_LOCK_RETRY;
  }

  get holding(): boolean {
    return this.#unit !== undefined;
  }

  async batch(limit: number): Promise<BatchStep> {
    const { work, statement, values, untilNone } = this.#statements;
    const unit = (this.#unit ??= work.take(limit));
    if (unit === undefined) return { deleted: 0, covered: 0, done: true, counted: false };
    const [head, rest] = work.split(unit, limit);
    const deleted = (await this.#client.query({ ...statement, values: values(head) })).rowCount ?? 0;
    const checked = this.#checking;
    this.#checking = untilNone && deleted > 0;
    if (!this.#checking) this.#unit = rest;
    // The check found nothing left: no batch, but a boundary (where a spare connection may go back).
    return { deleted, covered: work.covered(head), done: false, ...(checked && !this.#checking ? { counted: false } : {}) };
  }

  /**
   * A lock timeout (55P03) or a deadlock (40P01): the same statement again after a short, growing,
   * jittered sleep, up to the policy's attempts (see the top of this file); anything else fails the job.
   */
  retryAfter(error: unknown, attempt: number): number | null {
    const code = sqlState(error);
    const cause: RetryCause | null = code === SQLSTATE.lockNotAvailable ? 'lock-timeout' : code === SQLSTATE.deadlockDetected ? 'deadlock' : null;
    if (cause === null || attempt >= this.#policy.attempts || this.#options.signal?.aborted === true) return null;
    this.#ctx.metrics.errors.inc({ kind: cause === 'lock-timeout' ? 'lock-timeout' : 'database' });
    const delayMs = backoff(this.#policy, attempt);
    this.#options.onRetry?.({ cause, attempt, delayMs });
    this.#ctx.log.debug({ cause, attempt, delayMs }, 'revocation statement retried');
    return delayMs;
  }

  shrunk(): void {
    this.#options.onRetry?.({ cause: 'statement-timeout', attempt: 1, delayMs: 0 });
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
