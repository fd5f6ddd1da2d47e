/**
 * Reap idle sessions: every row whose last_used_at is older than JANITOR_IDLE_TIMEOUT, whatever its
 * expires_at. See db/sql/reap-idle.ts for the statements and why they have that shape.
 *
 * Without an index on last_used_at (the normal case), a run walks the primary key in ranges from
 * the position stored in session_janitor.reap_position, deleting the idle rows of each range in one
 * short statement that also moves the position. One pass reads the table about once; a pass longer
 * than a run's budget is carried on by the next runs, and a run that reaches the end of the pass
 * stops there ('drained'): the next run starts a new pass. A run therefore never reads a row twice.
 *
 * The range width (ids, not rows) adapts towards JANITOR_BATCH_TARGET_MS, within the batch size
 * bounds: a range can delete no more rows than it has ids, so JANITOR_BATCH_MAX_SIZE still caps the
 * rows of one transaction.
 *
 * With an index whose first column is last_used_at (a DBA's choice), the run deletes the idle rows
 * in batches through that index instead and keeps no position: the idle rows are one index range.
 *
 * A run works on one pooled connection of its own (tasks/connection.ts): its prepared statements
 * and, with JANITOR_PURGE_ASYNC_COMMIT (the default), asynchronous commit (what a crash can lose
 * then, and why nothing is skipped: db/sql/session.ts). A held row never stalls a range or a batch:
 * tasks/held-rows.ts. Its deletes write the same kind of WAL as the purge's, so the latency guard
 * (tasks/latency-guard.ts) holds it back the same way: smaller ranges and sleeps while the auth
 * service's commits slow down.
 */
import type pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { loadReapPosition, toPosition, withFraction, type PositionRow, type ReapPosition } from '../db/reap-position.ts';
import {
  addPassDeleted,
  countIdle,
  findIdleIndex,
  positionKey,
  REAP_POSITION_TABLE,
  reapIds,
  reapIndexCandidates,
  reapMovePosition,
  reapRange,
  reapRangeCandidates,
  reapRangeExceptHeld,
  reapThroughIndex,
  startPass,
} from '../db/sql/reap-idle.ts';
import { AdaptiveBatchSize, RunBudget, shrinkOnTimeout, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { HeldBack } from './held-back.ts';
import { aroundHeldRows, deleteInHalves, type SessionId } from './held-rows.ts';
import type { LatencyGuard } from './latency-guard.ts';
import { createLatencyGuard, type LatencyProbe } from './latency-probe.ts';
import { commandLine } from '../command-line.ts';

export type ReapStrategy = { readonly kind: 'range' } | { readonly kind: 'index'; readonly index: string };

export type ReapOutput = RunOutput & { wouldDelete?: number };

/** For tests: the latency guard's probe instead of the real one. */
export interface ReapDeps {
  readonly latencyProbe?: LatencyProbe;
}

/** The run's brakes: the latency guard (null when off) and where its waits are counted. */
interface Brakes {
  readonly guard: LatencyGuard | null;
  readonly heldBack: HeldBack;
}

export async function reapIdle(ctx: TaskContext, options: RunOptions = {}, deps: ReapDeps = {}): Promise<ReapOutput> {
  const idleSeconds = idleTimeout(ctx);
  if (options.dryRun) return { deleted: 0, batches: 0, stoppedBy: 'drained', wouldDelete: await countIdleSessions(ctx) };
  const budget = new RunBudget(ctx.config.maxRunSeconds, ctx.config.maxRunRows, options.signal);
  const strategy = await detectStrategy(ctx);
  logStrategyOnce(ctx, strategy);
  const heldBack = options.heldBack ?? new HeldBack(ctx.metrics, 'reap-idle');
  // Ends the guard's sleeps and holds early: shutdown, or the end of the time budget.
  const wake = AbortSignal.any([AbortSignal.timeout(Math.max(1, Math.ceil(ctx.config.maxRunSeconds * 1000))), ...(options.signal ? [options.signal] : [])]);
  const guard = createLatencyGuard(ctx, 'reap-idle', heldBack, wake, deps.latencyProbe);
  await guard?.start();
  const brakes: Brakes = { guard, heldBack };
  try {
    return await withConnection(ctx, (client) =>
      strategy.kind === 'index'
        ? reapWithIndex(ctx, client, idleSeconds, budget, options, brakes)
        : walkRanges(ctx, client, idleSeconds, budget, options, brakes),
    );
  } finally {
    await guard?.finish();
    if (guard !== null) ctx.log.debug({ ...guard.stats, ...heldBack.summary }, 'reap latency guard');
  }
}

/**
 * Waits as the guard requires before the next batch, and its size: `unguarded` scaled down by the
 * guard. null: the run must stop (woken early by shutdown or the time budget).
 */
async function guardedSize({ guard, heldBack }: Brakes, unguarded: number, min: number): Promise<number | null> {
  if (guard === null) {
    heldBack.batch(0, false);
    return unguarded;
  }
  if (!(await guard.beforeBatch(0))) return null;
  const size = guard.batchRows(unguarded, Math.min(unguarded, min));
  heldBack.batch(0, size < unguarded);
  return size;
}

/** The idle rows among `ids`, in halves around held rows (tasks/held-rows.ts). */
function reapByIds(ctx: TaskContext, client: pg.PoolClient, idleSeconds: number, ids: readonly SessionId[]): Promise<number> {
  const statement = reapIds(ctx.config.sessionTable);
  return deleteInHalves(ctx, ids, async (part) => (await client.query({ ...statement, values: [part, idleSeconds] })).rowCount ?? 0);
}

async function walkRanges(
  ctx: TaskContext,
  client: pg.PoolClient,
  idleSeconds: number,
  budget: RunBudget,
  options: RunOptions,
  brakes: Brakes,
): Promise<RunOutput> {
  const { config, metrics } = ctx;
  const table = config.sessionTable;
  const key = positionKey(table);
  const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.batchMaxSize, config.batchTargetMs);
  let position = await beginPass(ctx, client);
  const fractionAtStart = position.fraction;
  let deleted = 0;
  let batches = 0;
  // Rows of this walker's last range that moved the position, not yet in pass_deleted: the next
  // range's statement adds them, or addPassDeleted at the end (db/sql/reap-idle.ts).
  let uncounted = 0;

  const runRange = async (from: number, to: number): Promise<number> => {
    const values = [key, position.pass, from, to, idleSeconds, uncounted];
    const started = performance.now();
    try {
      return await aroundHeldRows(
        ctx,
        async (exceptHeld) => (await client.query({ ...(exceptHeld ? reapRangeExceptHeld : reapRange)(table), values })).rowCount ?? 0,
        async () => {
          const { rows } = await client.query<{ id: SessionId }>({ ...reapRangeCandidates(table), values: [from, to, idleSeconds] });
          const rangeDeleted = await reapByIds(
            ctx,
            client,
            idleSeconds,
            rows.map((r) => r.id),
          );
          await client.query({ ...reapMovePosition(table), values: [key, position.pass, from, to, uncounted] });
          return rangeDeleted;
        },
      );
    } finally {
      metrics.batchDuration.observe({ task: 'reap-idle' }, (performance.now() - started) / 1000);
    }
  };

  /** Adds the uncounted rows to the pass they were deleted in. */
  const settleCount = async () => {
    if (uncounted === 0) return;
    await client.query({ ...addPassDeleted(table), values: [key, position.pass, uncounted] });
    uncounted = 0;
  };

  let stoppedBy: StoppedBy;
  for (;;) {
    if (position.lastId >= position.endId) {
      stoppedBy = 'drained';
      break;
    }
    const stop: StoppedBy | null = budget.stopReason(deleted);
    if (stop !== null) {
      stoppedBy = stop;
      break;
    }
    // A range holds at most as many rows as ids: capping the width keeps the row budget exact.
    const width = await guardedSize(brakes, Math.max(1, Math.min(size.size, budget.rowsLeft(deleted))), config.batchMinSize);
    if (width === null) {
      stoppedBy = budget.stopReason(deleted) ?? 'time-budget';
      break;
    }
    const from = position.lastId;
    const to = Math.min(from + width, position.endId);
    const started = performance.now();
    let rangeDeleted: number;
    try {
      rangeDeleted = await runRange(from, to);
    } catch (error) {
      if (shrinkOnTimeout(error, size, metrics)) continue;
      throw error;
    }
    const durationMs = performance.now() - started;
    size.record(to - from, durationMs);
    brakes.guard?.afterBatch(0, durationMs);
    options.onBatch?.({ rows: rangeDeleted, durationMs });
    deleted += rangeDeleted;
    batches += 1;
    metrics.sessionsDeleted.inc({ reason: 'idle' }, rangeDeleted);
    // Rows deleted: the position moved with them. None: no idle row in the range, or another
    // walker moved the position (then the delete read nothing); the position says which.
    const current = rangeDeleted > 0 ? undefined : await loadReapPosition(client, table);
    const moved = current === undefined || (current !== null && current.pass === position.pass && current.lastId === to);
    if (moved) {
      position = withFraction({ ...position, lastId: to, passDeleted: position.passDeleted + rangeDeleted });
      uncounted = rangeDeleted;
    } else {
      // Another walker moved the position: go on from where it stands now.
      await settleCount();
      position = current ?? (await beginPass(ctx, client));
    }
    options.onProgress?.({ deleted, batches, elapsedMs: budget.elapsedMs, fraction: position.fraction, fractionAtStart });
  }
  await settleCount();
  return { deleted, batches, stoppedBy };
}

async function reapWithIndex(
  ctx: TaskContext,
  client: pg.PoolClient,
  idleSeconds: number,
  budget: RunBudget,
  options: RunOptions,
  brakes: Brakes,
): Promise<RunOutput> {
  const { config, metrics } = ctx;
  const statement = reapThroughIndex(config.sessionTable);
  const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.batchMaxSize, config.batchTargetMs);
  let cursor = '-infinity';
  /** The next batch's rows deleted, and where the next batch starts (null: nothing idle is left after it). */
  const reapBatchThroughIndex = (limit: number) =>
    aroundHeldRows(
      ctx,
      async (exceptHeld) => {
        const { rows } = await client.query<{ deleted: number; cursor: string | null }>({ ...statement, values: [idleSeconds, limit, cursor, exceptHeld] });
        const row = rows[0] ?? { deleted: 0, cursor: null };
        // Fewer rows than asked for: no idle row that is not held is left after the cursor.
        return { deleted: row.deleted, cursor: row.deleted < limit ? null : row.cursor };
      },
      async () => {
        const { rows } = await client.query<{ id: SessionId; cursor: string }>({
          ...reapIndexCandidates(config.sessionTable),
          values: [idleSeconds, limit, cursor],
        });
        const deleted = await reapByIds(
          ctx,
          client,
          idleSeconds,
          rows.map((r) => r.id),
        );
        // Nothing deleted from a full batch: every row from the cursor on is held; the run stops here
        // rather than read the same rows again.
        return { deleted, cursor: rows.length < limit || deleted === 0 ? null : (rows.at(-1)?.cursor ?? null) };
      },
    );
  let deleted = 0;
  let batches = 0;
  for (;;) {
    const stop = budget.stopReason(deleted);
    if (stop !== null) return { deleted, batches, stoppedBy: stop };
    const limit = await guardedSize(brakes, Math.max(1, Math.min(size.size, budget.rowsLeft(deleted))), config.batchMinSize);
    if (limit === null) return { deleted, batches, stoppedBy: budget.stopReason(deleted) ?? 'time-budget' };
    const started = performance.now();
    let result: { deleted: number; cursor: string | null };
    try {
      result = await reapBatchThroughIndex(limit);
    } catch (error) {
      if (shrinkOnTimeout(error, size, metrics)) continue;
      throw error;
    } finally {
      metrics.batchDuration.observe({ task: 'reap-idle' }, (performance.now() - started) / 1000);
    }
    const durationMs = performance.now() - started;
    size.record(result.deleted, durationMs);
    brakes.guard?.afterBatch(0, durationMs);
    options.onBatch?.({ rows: result.deleted, durationMs });
    deleted += result.deleted;
    batches += 1;
    metrics.sessionsDeleted.inc({ reason: 'idle' }, result.deleted);
    options.onProgress?.({ deleted, batches, elapsedMs: budget.elapsedMs });
    if (result.cursor === null) return { deleted, batches, stoppedBy: 'drained' };
    cursor = result.cursor;
  }
}

/** The index the reaper would use now, or the primary-key walk. */
export async function detectStrategy({ pool, config }: TaskContext): Promise<ReapStrategy> {
  const { rows } = await pool.query<{ index_name: string }>({ ...findIdleIndex, values: [config.sessionTable.schema, config.sessionTable.name] });
  const index = rows[0]?.index_name;
  return index === undefined ? { kind: 'range' } : { kind: 'index', index };
}

/** Per pool (one per worker): the strategy last logged, so the log says it once, and again if it changes. */
const loggedStrategy = new WeakMap<pg.Pool, string>();

function logStrategyOnce({ pool, config, log }: TaskContext, strategy: ReapStrategy): void {
  const description = strategy.kind === 'index' ? `index:${strategy.index}` : 'range';
  if (loggedStrategy.get(pool) === description) return;
  loggedStrategy.set(pool, description);
  const table = positionKey(config.sessionTable);
  if (strategy.kind === 'index') {
    log.info({ table, index: strategy.index }, `reap-idle: ${table} has an index on last_used_at (${strategy.index}): reaping idle sessions through it`);
  } else {
    log.info({ table }, `reap-idle: no index on last_used_at: reaping idle sessions by walking the primary key of ${table} in ranges`);
  }
}

/** The table's position, starting a new pass first when there is none or the last one is finished. */
async function beginPass({ config }: TaskContext, client: pg.ClientBase): Promise<ReapPosition> {
  const key = positionKey(config.sessionTable);
  const { rows } = await client.query<PositionRow>({ ...startPass(config.sessionTable), values: [key] }).catch((error: unknown) => {
    // The position table is missing (not the session table): the schema predates migration 2.
    if (sqlState(error) !== SQLSTATE.undefinedTable || !(error instanceof Error && error.message.includes('reap_position'))) throw error;
    throw new Error(`${REAP_POSITION_TABLE} does not exist: run \`${commandLine('migrate')}\` (schema version 2 or later)`, { cause: error });
  });
  const started = rows[0];
  if (started !== undefined) return toPosition(started);
  const position = await loadReapPosition(client, config.sessionTable);
  if (position === null) throw new Error(`the reap position of ${key} vanished while starting a pass`);
  return position;
}

function idleTimeout({ config }: TaskContext): number {
  if (config.idleTimeoutSeconds === null) throw new Error('idle reaping is off (JANITOR_IDLE_TIMEOUT=off)');
  return config.idleTimeoutSeconds;
}

/**
 * Idle rows now, for --dry-run and the progress of the index path. Without an index this is a full
 * scan, which may outlast the pool's statement_timeout on a large table: it gets the run's time
 * budget instead, in a read-only transaction of its own.
 */
export async function countIdleSessions(ctx: TaskContext): Promise<number> {
  const idleSeconds = idleTimeout(ctx);
  return withConnection(ctx, async (client) => {
    await client.query('BEGIN READ ONLY');
    await client.query("SELECT set_config('statement_timeout', $1, true)", [`${ctx.config.maxRunSeconds * 1000}`]);
    const { rows } = await client.query<{ n: string }>({ ...countIdle(ctx.config.sessionTable), values: [idleSeconds] });
    await client.query('COMMIT');
    return Number(rows[0]?.n ?? 0);
  });
}
