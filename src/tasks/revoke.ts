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
 * Connections: a revocation works on a pooled connection of its own for the job (tasks/connection.ts),
 * whose commits are asynchronous (JANITOR_PURGE_ASYNC_COMMIT, the default; why a completed
 * revocation is durable all the same: db/sql/session.ts). A request of
 * more than one statement also takes a second connection (at most LANES in all) when the pool has
 * one free at once: the two take the next chunk (or range) in turn from the same list, so they
 * never work on the same users, jtis or ids, and each statement still locks its rows in id order.
 * A single DELETE uses one core of the server; two connections on disjoint chunks use two
 * (docs/performance.md). The second connection never makes anybody wait: it is not taken when
 * another task waits for the pool, and it is given back, between two statements, as soon as one
 * does. A lane that fails (after its retries) stops the others before their next statement; the
 * job then fails with that error and pg-boss retries it (what was done stays done).
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { tableLabel } from '../config.ts';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { revokeByJtis, revokeByUsers, revokeIdRange, sessionIdBounds } from '../db/sql/revoke.ts';
import type { Statement } from '../db/sql/identifiers.ts';
import type { RevokeRequest } from '../revoke-request.ts';
import { AdaptiveBatchSize } from './batching.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';

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

/**
 * The statements of one request, as units of work that the lanes take in turn. A unit that hit
 * statement_timeout goes back smaller (shrink), or cannot (then the error is thrown).
 */
interface WorkList<W> {
  take(): W | undefined;
  /** Whether take() would return a unit now. */
  more(): boolean;
  shrink(unit: W): boolean;
  done(unit: W, durationMs: number): void;
}

/**
 * Chunks of at most maxSize items, in order; halved after a statement timeout. More than one chunk:
 * their number is rounded up to a multiple of the lanes, all of (nearly) the same size, so that
 * the lanes end together rather than one of them doing the last chunk alone.
 */
class Chunks<T> implements WorkList<T[]> {
  #next = 0;
  #size: number;
  /** Pieces of a chunk that timed out, to be taken first (the last one first). */
  readonly #returned: T[][] = [];
  readonly #items: readonly T[];

  constructor(items: readonly T[], maxSize: number, lanes: number) {
    this.#items = items;
    const max = Math.max(1, maxSize);
    const chunks = Math.ceil(items.length / max);
    this.#size = chunks <= 1 ? max : Math.ceil(items.length / (Math.ceil(chunks / lanes) * lanes));
  }

  take(): T[] | undefined {
    const returned = this.#returned.pop();
    if (returned !== undefined) return returned;
    if (this.#next >= this.#items.length) return undefined;
    const chunk = this.#items.slice(this.#next, this.#next + this.#size);
    this.#next += chunk.length;
    return chunk;
  }

  more(): boolean {
    return this.#returned.length > 0 || this.#next < this.#items.length;
  }

  shrink(chunk: T[]): boolean {
    if (chunk.length <= 1) return false;
    this.#size = Math.min(this.#size, Math.floor(chunk.length / 2));
    for (let end = chunk.length; end > 0; end -= this.#size) this.#returned.push(chunk.slice(Math.max(0, end - this.#size), end));
    return true;
  }

  done(): void {}
}

interface IdRange {
  readonly lower: number;
  readonly upper: number;
}

/** Primary-key ranges [lower, upper) from lo to hi, their width adapting (in ids, not rows). */
class IdRanges implements WorkList<IdRange> {
  #lower: number;
  readonly #hi: number;
  readonly #width: AdaptiveBatchSize;
  readonly #returned: IdRange[] = [];

  constructor(lo: number, hi: number, width: AdaptiveBatchSize) {
    this.#lower = lo;
    this.#hi = hi;
    this.#width = width;
  }

  take(): IdRange | undefined {
    const returned = this.#returned.pop();
    if (returned !== undefined) return returned;
    if (this.#lower > this.#hi) return undefined;
    const range = { lower: this.#lower, upper: Math.min(this.#lower + this.#width.size, this.#hi + 1) };
    this.#lower = range.upper;
    return range;
  }

  more(): boolean {
    return this.#returned.length > 0 || this.#lower <= this.#hi;
  }

  shrink(range: IdRange): boolean {
    if (this.#width.atMinimum) return false;
    this.#width.timedOut();
    const step = this.#width.size;
    for (let end = range.upper; end > range.lower; end -= step) this.#returned.push({ lower: Math.max(range.lower, end - step), upper: end });
    return true;
  }

  done(range: IdRange, durationMs: number): void {
    // The ids scanned, not the rows deleted, teach the width: the scan is most of the cost.
    this.#width.record(range.upper - range.lower, durationMs);
  }
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
    const cap = this.#ctx.config.batchMaxSize;
    await this.#lanes(this.#chunks(userIds), async (client, chunk) => {
      // At most `cap` sessions a statement (db/sql/revoke.ts): again until one deletes nothing. Not
      // until one deletes fewer than the cap: rows another transaction deleted meanwhile (a purge)
      // make a capped statement delete fewer, with more sessions of the chunk still there.
      // The statement that finds nothing is a check, not a batch.
      const values = [chunk, exceptJti, issuedBefore, cap];
      let revoked = await this.#statement(client, statement, values);
      while (revoked > 0) revoked = await this.#statement(client, statement, values, false);
    });
  }

  async byJtis(jtis: readonly string[]): Promise<void> {
    const statement = revokeByJtis(this.#ctx.config.sessionTable);
    await this.#lanes(this.#chunks(jtis), (client, chunk) => this.#statement(client, statement, [chunk]));
  }

  async byIdRanges(issuedBefore: string): Promise<void> {
    const { pool, config } = this.#ctx;
    const { rows } = await pool.query<{ lo: number | null; hi: number | null }>(sessionIdBounds(config.sessionTable));
    const lo = rows[0]?.lo ?? null;
    const hi = rows[0]?.hi ?? null;
    if (lo === null || hi === null) return;
    const statement = revokeIdRange(config.sessionTable);
    const width = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.batchMaxSize, config.batchTargetMs);
    await this.#lanes(new IdRanges(lo, hi, width), (client, range) => this.#statement(client, statement, [range.lower, range.upper, issuedBefore]));
  }

  #chunks<T>(items: readonly T[]): Chunks<T> {
    return new Chunks(items, this.#options.idsPerStatement ?? IDS_PER_STATEMENT, this.#maxLanes);
  }

  get #maxLanes(): number {
    return Math.max(1, this.#options.lanes ?? LANES);
  }

  /**
   * Runs every unit of work on the job's connection and, while the pool can spare one, on a second
   * (see the top of this file). A statement timeout shrinks the unit and puts it back.
   */
  async #lanes<W>(work: WorkList<W>, run: (client: pg.PoolClient, unit: W) => Promise<unknown>): Promise<void> {
    const { pool, metrics } = this.#ctx;
    const first = work.take();
    if (first === undefined) return;
    // A failing lane stops the others before their next statement; the first failure is the job's.
    const failed = new AbortController();
    let failure: { error: unknown } | undefined;
    // Each lane's promise is handled the moment it exists: a helper can fail while the job's own lane
    // still runs, and a rejection without a handler by then would end the process.
    const settle = (running: Promise<void>) =>
      running.catch((error: unknown) => {
        failure ??= { error };
        failed.abort();
      });

    const lane = async (client: pg.PoolClient, initial: W | undefined, helper: boolean) => {
      // A helper's connection can arrive after somebody began to wait (a new backend on a busy
      // server takes a while to start): it goes to them before its first statement.
      if (helper && pool.waitingCount > 0) return;
      for (let unit = initial ?? work.take(); unit !== undefined; unit = work.take()) {
        if (failed.signal.aborted) return;
        this.#throwIfAborted();
        const started = performance.now();
        try {
          await run(client, unit);
        } catch (error) {
          if (sqlState(error) === SQLSTATE.queryCanceled && !this.#aborted && work.shrink(unit)) {
            metrics.errors.inc({ kind: 'batch-timeout' });
            this.#options.onRetry?.({ cause: 'statement-timeout', attempt: 1, delayMs: 0 });
            continue;
          }
          throw error;
        }
        work.done(unit, performance.now() - started);
        // Somebody waits for a connection of the pool: a helper gives its own back.
        if (helper && pool.waitingCount > 0) return;
      }
    };
    // A helper that cannot connect is no failure: the job's own connection does its share.
    const runHelper = () =>
      pool.connect().then(
        (client) => withConnection(this.#ctx, () => lane(client, undefined, true), client),
        (error: unknown) => this.#ctx.log.debug({ err: error }, 'revocation: no second connection'),
      );

    // Helpers once the job has its own connection, while work is left after the first unit, and on
    // a connection the pool can spare now; they start (synchronously) before the job's own lane
    // runs its first statement.
    const lanes: Array<Promise<void>> = [];
    lanes.push(
      settle(
        withConnection(this.#ctx, (client) => {
          for (let i = 1; i < this.#maxLanes && work.more() && spareConnection(pool); i += 1) lanes.push(settle(runHelper()));
          return lane(client, first, false);
        }),
      ),
    );
    // Settled promises: none rejects. The helpers are in the list before the first one settles.
    for (let i = 0; i < lanes.length; i += 1) await lanes[i];
    if (failure) throw failure.error;
  }

  /**
   * One delete statement, retried after lock timeouts and deadlocks; counts what it deleted, and
   * returns it. `counted` false: a statement that deletes nothing is not a batch (the check that a
   * capped chunk is done).
   */
  async #statement(client: pg.PoolClient, statement: Statement, values: unknown[], counted = true): Promise<number> {
    const { metrics } = this.#ctx;
    for (let attempt = 1; ; attempt += 1) {
      const started = performance.now();
      try {
        const revoked = (await client.query({ ...statement, values })).rowCount ?? 0;
        if (revoked === 0 && !counted) return 0;
        this.revoked += revoked;
        this.batches += 1;
        metrics.sessionsDeleted.inc({ reason: 'revoked' }, revoked);
        metrics.rowsDeleted.inc({ table: tableLabel(this.#ctx.config.sessionTable), reason: 'revoked' }, revoked);
        this.#options.onProgress?.({ revoked: this.revoked, batches: this.batches });
        return revoked;
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

/** Whether pool.connect() would not wait: nobody waits, and a connection is idle or may be opened. */
function spareConnection(pool: pg.Pool): boolean {
  return pool.waitingCount === 0 && (pool.idleCount > 0 || pool.totalCount < (pool.options.max ?? 10));
}

/** Exponential from baseDelayMs, capped, with jitter (50-100 %) so that retries do not march in step. */
function backoff(policy: LockRetryPolicy, attempt: number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

function uniqueSorted<T extends number | string>(items: readonly T[]): T[] {
  return [...new Set(items)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
