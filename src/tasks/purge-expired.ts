/**
 * Purge expired sessions: every row with expires_at < now() - JANITOR_EXPIRED_GRACE, in batches of
 * one short transaction each, walking the expires_at index with a cursor (see db/sql/purge-expired.ts
 * for the statements and why they have that shape), the batch size adapting towards
 * JANITOR_BATCH_TARGET_MS.
 *
 * Lanes (JANITOR_PURGE_CONCURRENCY connections, default 1) can work at once on disjoint ranges: the
 * purgeable range is cut into slices of equal time, four per lane, and each lane takes the next
 * slice when it finishes one, so a slice dense with rows does not leave the other lanes idle. One
 * lane already matches the single statement (docs/performance.md); more lanes go faster on a
 * server with idle cores, at the auth service's expense on a small one.
 *
 * Each lane holds one pooled connection for the run (tasks/connection.ts): its prepared statements,
 * its asynchronous commit (JANITOR_PURGE_ASYNC_COMMIT) and the throttle's probe run on it. While
 * nobody writes, it borrows a second one between batches when the pool can spare it, to read the
 * next batch's bound while the batch deletes (BoundAhead). The
 * batch loop, its budget, size and brakes (the throttle, tasks/throttle.ts, and the latency guard,
 * tasks/latency-guard.ts) are the batch engine's (tasks/engine.ts); this file says how a lane takes
 * one batch. A held row never stalls a batch: tasks/held-rows.ts.
 */
import type pg from 'pg';
import type { PurgeTable } from '../config.ts';
import { checkPurgeTable } from '../db/purge-tables.ts';
import { sessionTarget, type PurgeTarget } from '../db/sql/purge-target.ts';
import type { Statement } from '../db/sql/identifiers.ts';
import {
  anyPurgeable,
  countPurgeable,
  FIRST_TID,
  purgeBatch,
  purgeBatchExceptHeld,
  purgeBound,
  purgeCandidates,
  purgeIds,
  purgeSliceBoundaries,
  purgeIdsExceptHeld,
  purgeTieIds,
  purgeWalPosition,
  tieSlack,
  type BoundRow,
  type TieIdsRow,
} from '../db/sql/purge-expired.ts';
import { isPaused } from '../db/sql/pause.ts';
import { purgeTableTask, scheduledTask, type ScheduledTaskName } from '../queues.ts';
import type { RunOptions, RunOutput } from './batching.ts';
import type { BrakeDeps } from './brakes.ts';
import type { TaskContext } from './context.ts';
import { runBatches, type BatchScope, type Lane } from './engine.ts';
import { borrowed, spareConnection } from './connection.ts';
import { aroundHeldRows, deleteInHalves, type SessionId } from './held-rows.ts';
import { pauseOf } from './pause.ts';

const SLICES_PER_LANE = 4;

interface Slice {
  readonly from: string;
  readonly to: string;
}

/**
 * Where a lane stands in its slice: every row before `at` is done; of the rows on `at`, none, all,
 * or those up to a ctid (a tie too large for one batch, walked by itself: db/sql/purge-expired.ts).
 */
interface Cursor {
  readonly at: string;
  readonly taken: 'none' | 'all' | { readonly tid: string };
}

interface BatchResult {
  /** The purge is paused (BoundRow.paused): nothing was deleted, the cursor stays. */
  readonly paused?: true;
  readonly deleted: number;
  /** null: fewer rows than the batch size were left in the slice, so the slice is done. */
  readonly next: Cursor | null;
  /** WAL positions around the delete (bytes since 0/0); NaN when not read. */
  readonly walStart: number;
  readonly walEnd: number;
  /** BatchStep.oldestWaitingSeconds of the lane's slice: the bound's (BoundRow.waited); undefined for a tie's batch, or a slice done. */
  readonly waited?: number | null;
}

const PAUSED: BatchResult = { paused: true, deleted: 0, next: null, walStart: Number.NaN, walEnd: Number.NaN };

/**
 * The next batch's bound, read ahead on a borrowed connection while this batch deletes: it starts
 * at this batch's bound, which the delete does not move, so it is the bound the next batch would
 * read. Only while nobody writes (BatchScope.idle) and the pool has a connection to spare: the two
 * statements then run on two cores at once, and the index walk of the bound (17-20 % of a
 * 20,000-row batch, docs/performance.md) leaves the batch's time. Used when the next batch starts
 * at that cursor with the same size and slice; a read that failed is read again the usual way.
 */
interface BoundAhead {
  readonly at: string;
  readonly to: string;
  readonly size: number;
  /** undefined: the read failed. */
  readonly row: Promise<BoundRow | undefined>;
}

/** For tests: the throttle's view of the database, and the latency guard's probe, instead of the real ones. */
export type PurgeDeps = BrakeDeps;

/** What one purge run deletes from: the sessions table, or an extra table of JANITOR_PURGE_TABLES. */
interface PurgeSpec {
  readonly task: ScheduledTaskName;
  readonly target: PurgeTarget;
  readonly graceSeconds: number;
  readonly lanes: number;
}

const sessionsSpec = ({ config }: TaskContext): PurgeSpec => ({
  task: 'purge-expired',
  target: sessionTarget(config.sessionTable),
  graceSeconds: config.expiredGraceSeconds,
  lanes: config.purgeConcurrency,
});

export async function purgeExpired(ctx: TaskContext, options: RunOptions = {}, deps: PurgeDeps = {}): Promise<RunOutput & { wouldDelete?: number }> {
  return purge(ctx, sessionsSpec(ctx), options, deps);
}

/**
 * An extra table's purge (JANITOR_PURGE_TABLES), the sessions table's batches on its own expiry
 * column and key. The table is checked first (db/purge-tables.ts): one dropped, or whose grant was
 * revoked, fails this run with the line that says so, and no other table's.
 */
export async function purgeTable(
  ctx: TaskContext,
  table: PurgeTable,
  options: RunOptions = {},
  deps: PurgeDeps = {},
): Promise<RunOutput & { wouldDelete?: number }> {
  const target = await purgeTableTarget(ctx, table);
  // Nothing to purge (the usual tick of a small table): no brakes, no lane, nothing the sessions
  // table's purge at the same tick would feel (bench case E).
  if (!options.dryRun) {
    const { rows } = await ctx.pool.query<{ found: boolean }>({ ...anyPurgeable(target), values: [table.graceSeconds] });
    if (rows[0]?.found !== true) return { deleted: 0, batches: 0, stoppedBy: 'drained' };
  }
  return purge(ctx, tableSpec(table, target), options, deps);
}

/** An extra table's run: one lane. */
function tableSpec(table: PurgeTable, target: PurgeTarget): PurgeSpec {
  return { task: purgeTableTask(table).task, target, graceSeconds: table.graceSeconds, lanes: 1 };
}

/** The table's purge target (its primary key), or the error whose message is its problems, one per line. */
async function purgeTableTarget({ pool }: TaskContext, table: PurgeTable): Promise<PurgeTarget> {
  const check = await checkPurgeTable(pool, table);
  if (check.target === null) throw new Error(check.problems.join('\n'));
  return check.target;
}

async function purge(ctx: TaskContext, spec: PurgeSpec, options: RunOptions, deps: PurgeDeps): Promise<RunOutput & { wouldDelete?: number }> {
  if (options.dryRun) return { deleted: 0, batches: 0, stoppedBy: 'drained', wouldDelete: await countPurgeableRows(ctx, spec) };
  // Shared by the lanes: each takes the next slice when it finishes one.
  const slices = await planSlices(ctx, spec, spec.lanes === 1 ? 1 : spec.lanes * SLICES_PER_LANE);
  return runBatches(
    ctx,
    {
      task: spec.task,
      // JANITOR_PURGE_BATCH_MAX_SIZE while anyone writes (the auth service's commits wait for the
      // WAL a batch writes), JANITOR_BATCH_MAX_SIZE while nobody does (config.ts).
      maxSize: ctx.config.purgeBatchMaxSize,
      idleMaxSize: ctx.config.batchMaxSize,
      openLane: (_laneId, client) => Promise.resolve(purgeLane(ctx, spec, client, slices)),
      readsPause: true,
    },
    options,
    deps,
  );
}

/** A lane of the purge: the slices it takes from `slices` in turn, batch by batch; null when none is left. */
function purgeLane(ctx: TaskContext, spec: PurgeSpec, client: pg.PoolClient, slices: Slice[]): Lane | null {
  const { config } = ctx;
  const grace = spec.graceSeconds;
  const table = spec.target;
  const measureWal = config.purgeMaxWalBytesPerSecond !== null;
  // Read by each batch's first statement (BoundRow.paused).
  const pause = pauseOf(scheduledTask(config, spec.task));
  let slice = slices.shift();
  if (slice === undefined) return null;
  let cursor: Cursor = { at: slice.from, taken: 'none' };

  /** Deletes with one of the statement triples (range or tie) around held rows: see tasks/held-rows.ts. */
  const deleteAround = ({ held, waits }: BatchScope, fast: Statement, exceptHeld: Statement, candidates: Statement, values: unknown[]) =>
    aroundHeldRows(
      ctx,
      async (skipHeld) => (await client.query({ ...(skipHeld ? exceptHeld : fast), values })).rowCount ?? 0,
      async () => {
        const { rows: ids } = await client.query<{ id: SessionId }>({ ...candidates, values });
        return deleteInHalves(
          ctx,
          ids.map((r) => r.id),
          async (part) => (await client.query({ ...purgeIds(table), values: [part, grace] })).rowCount ?? 0,
          held,
          waits,
        );
      },
      waits,
    );

  const walAfter = async () => (measureWal ? ((await client.query<{ wal: number }>(purgeWalPosition)).rows[0]?.wal ?? Number.NaN) : Number.NaN);

  let ahead: BoundAhead | null = null;
  /** Reads the bound after `at` for the next batch on a spare connection (BoundAhead). Not with the WAL cap: its WAL reading would hold this batch's. */
  const readAhead = (scope: BatchScope, at: string, to: string, size: number): void => {
    if (measureWal || !scope.idle() || !spareConnection(ctx.pool)) return;
    const values = [at, to, grace, size, tieSlack(size) + 1, pause];
    const row = borrowed(ctx.pool, async (other) => (await other.query<BoundRow>({ ...purgeBound(table, false), values })).rows[0]).catch(() => undefined);
    ahead = { at, to, size, row };
  };
  /** The batch's bound: read ahead by the batch before (its pause read again now), or read now. */
  const readBound = async (lowerInclusive: boolean, to: string, size: number): Promise<BoundRow | undefined> => {
    const taken = ahead;
    ahead = null;
    if (taken !== null && !lowerInclusive && taken.at === cursor.at && taken.to === to && taken.size === size) {
      const row = await taken.row;
      if (row !== undefined) {
        // The bound's own pause reading is a batch old: a pause set meanwhile stops this batch.
        const { rows } = await client.query<{ paused: boolean }>({ ...isPaused, values: [pause] });
        return { ...row, paused: rows[0]?.paused === true };
      }
    }
    const { rows } = await client.query<BoundRow>({
      ...purgeBound(table, lowerInclusive),
      values: [cursor.at, to, grace, size, tieSlack(size) + 1, pause],
    });
    return rows[0];
  };

  /** The next `size` rows of the tie on `at` after the ctid `after`, deleted by id. */
  const tieBatch = async ({ held, waits }: BatchScope, at: string, after: string, size: number): Promise<BatchResult> => {
    const { rows } = await client.query<TieIdsRow>({ ...purgeTieIds(table), values: [at, after, grace, size, pause] });
    const row = rows[0];
    if (row?.paused === true) return PAUSED;
    const ids = row?.ids ?? [];
    const deleted =
      ids.length === 0
        ? 0
        : await aroundHeldRows(
            ctx,
            async (skipHeld) => (await client.query({ ...(skipHeld ? purgeIdsExceptHeld : purgeIds)(table), values: [ids, grace] })).rowCount ?? 0,
            () => deleteInHalves(ctx, ids, async (part) => (await client.query({ ...purgeIds(table), values: [part, grace] })).rowCount ?? 0, held, waits),
            waits,
          );
    const done = row?.tid == null || row.n < size;
    return { deleted, next: { at, taken: done ? 'all' : { tid: row.tid } }, walStart: row?.wal ?? Number.NaN, walEnd: await walAfter() };
  };

  const runBatch = async (scope: BatchScope, to: string, size: number): Promise<BatchResult> => {
    if (typeof cursor.taken === 'object') return tieBatch(scope, cursor.at, cursor.taken.tid, size);
    const lowerInclusive = cursor.taken === 'none';
    const row = await readBound(lowerInclusive, to, size);
    if (row?.paused === true) return PAUSED;
    const bound = row?.bound ?? null;
    if (bound !== null && row?.advances !== true) {
      // Deleting up to a bound that is not after the cursor deletes nothing and leaves the
      // cursor where it was: every later batch would do the same until the time budget ends.
      throw new Error(`purge made no progress: its bound ${bound} is not after its cursor ${cursor.at}; no batch would delete a row`);
    }
    // A tie on the bound larger than the slack: the rows before it now, the tie by itself next.
    if (bound !== null && row?.tied === true) {
      if (row.at_cursor === true) return tieBatch(scope, bound, FIRST_TID, size);
      const deleted = await deleteAround(
        scope,
        purgeBatch(table, lowerInclusive, false),
        purgeBatchExceptHeld(table, lowerInclusive, false),
        purgeCandidates(table, lowerInclusive, false),
        [cursor.at, to, grace, bound],
      );
      return { deleted, next: { at: bound, taken: 'none' }, walStart: row.wal, walEnd: await walAfter(), waited: row.waited };
    }
    if (bound !== null) readAhead(scope, bound, to, size);
    const deleted = await deleteAround(
      scope,
      purgeBatch(table, lowerInclusive),
      purgeBatchExceptHeld(table, lowerInclusive),
      purgeCandidates(table, lowerInclusive),
      [cursor.at, to, grace, bound ?? 'infinity'],
    );
    return {
      deleted,
      next: bound === null ? null : { at: bound, taken: 'all' },
      walStart: row?.wal ?? Number.NaN,
      walEnd: await walAfter(),
      ...(bound === null ? {} : { waited: row?.waited ?? null }),
    };
  };

  return {
    batch: async (limit, scope) => {
      if (slice === undefined) return { deleted: 0, covered: 0, done: true };
      const result = await runBatch(scope, slice.to, limit);
      if (result.paused === true) return { deleted: 0, covered: 0, done: false, counted: false, paused: true };
      if (result.next === null) {
        // The slice is done: the next one, if any is left.
        slice = slices.shift();
        if (slice !== undefined) cursor = { at: slice.from, taken: 'none' };
      } else {
        cursor = result.next;
      }
      return {
        deleted: result.deleted,
        covered: result.deleted,
        done: slice === undefined,
        walStart: result.walStart,
        walEnd: result.walEnd,
        ...(result.waited === undefined ? {} : { oldestWaitingSeconds: result.waited }),
      };
    },
    // A read ahead in flight (the slice ended, the run stopped) has its connection back before the run ends.
    finish: async () => {
      await ahead?.row;
    },
  };
}

async function planSlices({ pool }: TaskContext, spec: PurgeSpec, count: number): Promise<Slice[]> {
  const boundaries: string[] = [];
  if (count > 1) {
    const { rows } = await pool.query<{ boundary: string }>({
      ...purgeSliceBoundaries(spec.target),
      values: [spec.graceSeconds, count],
    });
    boundaries.push(...rows.map((r) => r.boundary));
  }
  const edges = ['-infinity', ...boundaries, 'infinity'];
  return edges.slice(1).map((to, i) => ({ from: edges[i] ?? '-infinity', to }));
}

/** Purgeable rows now: the ETA of the foreground command. */
export async function countPurgeableSessions(ctx: TaskContext): Promise<number> {
  return countPurgeableRows(ctx, sessionsSpec(ctx));
}

/** Purgeable rows of an extra table now (its check first, as its run's). */
export async function countPurgeableTableRows(ctx: TaskContext, table: PurgeTable): Promise<number> {
  return countPurgeableRows(ctx, tableSpec(table, await purgeTableTarget(ctx, table)));
}

async function countPurgeableRows({ pool }: TaskContext, spec: PurgeSpec): Promise<number> {
  const { rows } = await pool.query<{ n: string }>({ ...countPurgeable(spec.target), values: [spec.graceSeconds] });
  return Number(rows[0]?.n ?? 0);
}
