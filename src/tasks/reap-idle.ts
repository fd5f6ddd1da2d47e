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
 * service's commits slow down. The batch loop is the batch engine's (tasks/engine.ts); this file
 * says how the walk (or the index path) takes one batch.
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
import type { RunOptions, RunOutput } from './batching.ts';
import type { BrakeDeps } from './brakes.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { runBatches, type BatchScope, type Lane } from './engine.ts';
import { aroundHeldRows, deleteInHalves, type SessionId } from './held-rows.ts';
import { commandLine } from '../command-line.ts';

export type ReapStrategy = { readonly kind: 'range' } | { readonly kind: 'index'; readonly index: string };

export type ReapOutput = RunOutput & { wouldDelete?: number };

/** For tests: the latency guard's probe instead of the real one. */
export type ReapDeps = Pick<BrakeDeps, 'latencyProbe'>;

export async function reapIdle(ctx: TaskContext, options: RunOptions = {}, deps: ReapDeps = {}): Promise<ReapOutput> {
  const idleSeconds = idleTimeout(ctx);
  if (options.dryRun) return { deleted: 0, batches: 0, stoppedBy: 'drained', wouldDelete: await countIdleSessions(ctx) };
  const strategy = await detectStrategy(ctx);
  logStrategyOnce(ctx, strategy);
  return runBatches(
    ctx,
    {
      task: 'reap-idle',
      maxSize: ctx.config.batchMaxSize,
      openLane: (_laneId: number, client: pg.PoolClient) =>
        strategy.kind === 'index' ? Promise.resolve(indexLane(ctx, client, idleSeconds)) : rangeLane(ctx, client, idleSeconds),
    },
    options,
    deps,
  );
}

/** The idle rows among `ids`, in halves around held rows (tasks/held-rows.ts). */
function reapByIds(ctx: TaskContext, client: pg.PoolClient, idleSeconds: number, ids: readonly SessionId[], { held, waits }: BatchScope): Promise<number> {
  const statement = reapIds(ctx.config.sessionTable);
  return deleteInHalves(ctx, ids, async (part) => (await client.query({ ...statement, values: [part, idleSeconds] })).rowCount ?? 0, held, waits);
}

/** The walk over primary-key ranges from the stored position; a batch is one range of at most `limit` ids. */
async function rangeLane(ctx: TaskContext, client: pg.PoolClient, idleSeconds: number): Promise<Lane | null> {
  const table = ctx.config.sessionTable;
  const key = positionKey(table);
  let position = await beginPass(ctx, client);
  // A pass over an empty table: nothing to walk.
  if (position.lastId >= position.endId) return null;
  // Rows of this walker's last range that moved the position, not yet in pass_deleted: the next
  // range's statement adds them, or addPassDeleted at the end (db/sql/reap-idle.ts).
  let uncounted = 0;

  const runRange = (from: number, to: number, scope: BatchScope): Promise<number> => {
    const values = [key, position.pass, from, to, idleSeconds, uncounted];
    return aroundHeldRows(
      ctx,
      async (exceptHeld) => (await client.query({ ...(exceptHeld ? reapRangeExceptHeld : reapRange)(table), values })).rowCount ?? 0,
      async () => {
        const { rows } = await client.query<{ id: SessionId }>({ ...reapRangeCandidates(table), values: [from, to, idleSeconds] });
        const rangeDeleted = await reapByIds(
          ctx,
          client,
          idleSeconds,
          rows.map((r) => r.id),
          scope,
        );
        await client.query({ ...reapMovePosition(table), values: [key, position.pass, from, to, uncounted] });
        return rangeDeleted;
      },
      scope.waits,
    );
  };

  /** Adds the uncounted rows to the pass they were deleted in. */
  const settleCount = async () => {
    if (uncounted === 0) return;
    await client.query({ ...addPassDeleted(table), values: [key, position.pass, uncounted] });
    uncounted = 0;
  };

  return {
    fractionAtStart: position.fraction,
    batch: async (limit, scope) => {
      // A range holds at most as many rows as ids: its width is the batch's cap.
      const from = position.lastId;
      const to = Math.min(from + limit, position.endId);
      if (from >= to) return { deleted: 0, covered: 0, done: true, fraction: position.fraction };
      const rangeDeleted = await runRange(from, to, scope);
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
      return { deleted: rangeDeleted, covered: to - from, done: position.lastId >= position.endId, fraction: position.fraction };
    },
    finish: settleCount,
  };
}

/** Batches through an index on last_used_at, from a cursor on it; no stored position. */
function indexLane(ctx: TaskContext, client: pg.PoolClient, idleSeconds: number): Lane {
  const { config } = ctx;
  const statement = reapThroughIndex(config.sessionTable);
  let cursor = '-infinity';
  /** The next batch's rows deleted, and where the next batch starts (null: nothing idle is left after it). */
  const reapBatchThroughIndex = (limit: number, scope: BatchScope) =>
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
          scope,
        );
        // Nothing deleted from a full batch: every row from the cursor on is held; the run stops here
        // rather than read the same rows again.
        return { deleted, cursor: rows.length < limit || deleted === 0 ? null : (rows.at(-1)?.cursor ?? null) };
      },
      scope.waits,
    );
  return {
    batch: async (limit, scope) => {
      const result = await reapBatchThroughIndex(limit, scope);
      if (result.cursor !== null) cursor = result.cursor;
      return { deleted: result.deleted, covered: result.deleted, done: result.cursor === null };
    },
  };
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
