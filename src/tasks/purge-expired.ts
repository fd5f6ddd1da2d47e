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
 * its asynchronous commit (JANITOR_PURGE_ASYNC_COMMIT) and the throttle's probe run on it. The
 * throttle (tasks/throttle.ts) sleeps or pauses between batches, and so does the latency guard
 * (tasks/latency-guard.ts), which also makes batches smaller while the auth service's commits slow
 * down. A held row never stalls a batch: tasks/held-rows.ts.
 */
import type pg from 'pg';
import { qualified } from '../db/sql/identifiers.ts';
import {
  countPurgeable,
  purgeBatch,
  purgeBatchExceptHeld,
  purgeBound,
  purgeCandidates,
  purgeIds,
  purgeSliceBoundaries,
  purgeTie,
  purgeTieBound,
  purgeTieCandidates,
  purgeTieExceptHeld,
  purgeWalPosition,
  FIRST_TID,
  LAST_TID,
  tieSlack,
  type BoundRow,
  type TieBoundRow,
} from '../db/sql/purge-expired.ts';
import type { Statement } from '../db/sql/identifiers.ts';
import { throttleProbe, type ProbeRow } from '../db/sql/throttle.ts';
import { AdaptiveBatchSize, RunBudget, shrinkOnTimeout, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { HeldBack } from './held-back.ts';
import { aroundHeldRows, deleteInHalves, HeldRows, type LockWaits, type SessionId } from './held-rows.ts';
import { createLatencyGuard, type LatencyProbe } from './latency-probe.ts';
import { reportStall } from './stall.ts';
import { isOff, Throttle, type Brake, type DatabaseState, type ThrottleEvent, type ThrottleSettings } from './throttle.ts';

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
  readonly deleted: number;
  /** null: fewer rows than the batch size were left in the slice, so the slice is done. */
  readonly next: Cursor | null;
  /** WAL positions around the delete (bytes since 0/0); NaN when not read. */
  readonly walStart: number;
  readonly walEnd: number;
}

/** For tests: the throttle's view of the database, and the latency guard's probe, instead of the real ones. */
export interface PurgeDeps {
  readonly probe?: (lane: number) => Promise<DatabaseState>;
  readonly latencyProbe?: LatencyProbe;
}

export async function purgeExpired(ctx: TaskContext, options: RunOptions = {}, deps: PurgeDeps = {}): Promise<RunOutput & { wouldDelete?: number }> {
  const { config, metrics } = ctx;
  const grace = config.expiredGraceSeconds;
  const table = config.sessionTable;
  if (options.dryRun) return { deleted: 0, batches: 0, stoppedBy: 'drained', wouldDelete: await countPurgeableSessions(ctx) };

  const budget = new RunBudget(config.maxRunSeconds, config.maxRunRows, options.signal);
  const held = new HeldRows(() => budget.msLeft, config.lockTimeoutMs);
  const slices = await planSlices(ctx, config.purgeConcurrency === 1 ? 1 : config.purgeConcurrency * SLICES_PER_LANE);
  // A failing lane stops the others at their next batch, then the run rethrows its error.
  const failed = new AbortController();
  // Each lane works on a connection of its own for the whole run: its session settings (asynchronous
  // commit) and its prepared statements, and the throttle's probe, run on it.
  const clients: Array<pg.PoolClient | undefined> = [];
  const heldBack = options.heldBack ?? new HeldBack(metrics, 'purge-expired');
  const throttle = createThrottle(
    ctx,
    deps.probe ??
      ((lane) => {
        const client = clients[lane];
        return client === undefined ? Promise.resolve(UNKNOWN) : probeDatabase(client, ctx);
      }),
    heldBack,
  );
  const measureWal = config.purgeMaxWalBytesPerSecond !== null;
  // Ends a throttle's or the guard's sleep or pause early: shutdown, a failed lane, or the end of the time budget.
  const wake = AbortSignal.any([
    failed.signal,
    ...(throttle === null && config.latencyGuardFactor === null
      ? []
      : [AbortSignal.timeout(Math.max(1, Math.ceil(config.maxRunSeconds * 1000 - budget.elapsedMs)))]),
    ...(options.signal ? [options.signal] : []),
  ]);
  const guard = createLatencyGuard(ctx, 'purge-expired', heldBack, wake, deps.latencyProbe);
  await guard?.start();
  let deleted = 0;
  let batches = 0;
  let stoppedBy: StoppedBy | null = null;

  /** Deletes with one of the statement triples (range or tie) around held rows: see tasks/held-rows.ts. */
  const deleteAround = (client: pg.PoolClient, waits: LockWaits, fast: Statement, exceptHeld: Statement, candidates: Statement, values: unknown[]) =>
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

  const walAfter = async (client: pg.PoolClient) =>
    measureWal ? ((await client.query<{ wal: number }>(purgeWalPosition)).rows[0]?.wal ?? Number.NaN) : Number.NaN;

  /** The next `size` rows of the tie on `at` after the ctid `after`. */
  const tieBatch = async (client: pg.PoolClient, waits: LockWaits, at: string, after: string, size: number): Promise<BatchResult> => {
    const { rows } = await client.query<TieBoundRow>({ ...purgeTieBound(table), values: [at, after, grace, size] });
    const tid = rows[0]?.tid ?? null;
    const deleted = await deleteAround(client, waits, purgeTie(table), purgeTieExceptHeld(table), purgeTieCandidates(table), [
      at,
      after,
      grace,
      tid ?? LAST_TID,
    ]);
    return { deleted, next: { at, taken: tid === null ? 'all' : { tid } }, walStart: rows[0]?.wal ?? Number.NaN, walEnd: await walAfter(client) };
  };

  const runBatch = async (client: pg.PoolClient, waits: LockWaits, slice: Slice, cursor: Cursor, size: number): Promise<BatchResult> => {
    const started = performance.now();
    try {
      if (typeof cursor.taken === 'object') return await tieBatch(client, waits, cursor.at, cursor.taken.tid, size);
      const lowerInclusive = cursor.taken === 'none';
      const { rows } = await client.query<BoundRow>({ ...purgeBound(table, lowerInclusive), values: [cursor.at, slice.to, grace, size, tieSlack(size) + 1] });
      const row = rows[0];
      const bound = row?.bound ?? null;
      if (bound !== null && row?.advances !== true) {
        // Deleting up to a bound that is not after the cursor deletes nothing and leaves the
        // cursor where it was: every later batch would do the same until the time budget ends.
        throw new Error(`purge made no progress: its bound ${bound} is not after its cursor ${cursor.at}; no batch would delete a row`);
      }
      // A tie on the bound larger than the slack: the rows before it now, the tie by itself next.
      if (bound !== null && row?.tied === true) {
        if (row.at_cursor === true) return await tieBatch(client, waits, bound, FIRST_TID, size);
        const values = [cursor.at, slice.to, grace, bound];
        const deleted = await deleteAround(
          client,
          waits,
          purgeBatch(table, lowerInclusive, false),
          purgeBatchExceptHeld(table, lowerInclusive, false),
          purgeCandidates(table, lowerInclusive, false),
          values,
        );
        return { deleted, next: { at: bound, taken: 'none' }, walStart: row.wal, walEnd: await walAfter(client) };
      }
      const values = [cursor.at, slice.to, grace, bound ?? 'infinity'];
      const deleted = await deleteAround(
        client,
        waits,
        purgeBatch(table, lowerInclusive),
        purgeBatchExceptHeld(table, lowerInclusive),
        purgeCandidates(table, lowerInclusive),
        values,
      );
      return { deleted, next: bound === null ? null : { at: bound, taken: 'all' }, walStart: row?.wal ?? Number.NaN, walEnd: await walAfter(client) };
    } finally {
      metrics.batchDuration.observe({ task: 'purge-expired' }, (performance.now() - started) / 1000);
    }
  };

  /** Why this lane must stop before its next batch, or null. */
  const stopReason = (): StoppedBy | null => stoppedBy ?? (failed.signal.aborted ? 'shutdown' : budget.stopReason(deleted));

  const drain = async (laneId: number, client: pg.PoolClient) => {
    const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.purgeBatchMaxSize, config.batchTargetMs);
    const waits: LockWaits = { ms: 0 };
    for (let slice = slices.shift(); slice !== undefined; slice = slices.shift()) {
      let cursor: Cursor = { at: slice.from, taken: 'none' };
      for (;;) {
        let stop = stopReason();
        if (stop === null && throttle !== null && !(await throttle.beforeBatch(laneId, wake))) {
          // Woken early: the reason is one of the budget's, or a failed lane.
          stop = stopReason() ?? 'time-budget';
        }
        if (stop === null && guard !== null && !(await guard.beforeBatch(laneId))) stop = stopReason() ?? 'time-budget';
        if (stop !== null) {
          stoppedBy ??= stop;
          return;
        }
        const unguarded = Math.max(1, Math.min(size.size, budget.rowsLeft(deleted)));
        const limit = guard === null ? unguarded : guard.batchRows(unguarded, Math.min(unguarded, config.batchMinSize));
        heldBack.batch(laneId, limit < unguarded);
        const started = performance.now();
        const waitedBefore = waits.ms;
        let result: BatchResult;
        try {
          result = await runBatch(client, waits, slice, cursor, limit);
        } catch (error) {
          if (shrinkOnTimeout(error, size, metrics)) continue;
          throw error;
        }
        const durationMs = performance.now() - started;
        const workMs = Math.max(0, durationMs - (waits.ms - waitedBefore));
        size.record(result.deleted, workMs);
        throttle?.afterBatch(laneId, workMs, result.walStart, result.walEnd);
        guard?.afterBatch(laneId, workMs);
        deleted += result.deleted;
        batches += 1;
        metrics.sessionsDeleted.inc({ reason: 'expired' }, result.deleted);
        options.onBatch?.({ rows: result.deleted, durationMs });
        options.onProgress?.({ deleted, batches, elapsedMs: budget.elapsedMs });
        if (result.next === null) break;
        cursor = result.next;
      }
    }
  };

  const lane = (laneId: number) =>
    withConnection(ctx, async (client) => {
      clients[laneId] = client;
      try {
        await drain(laneId, client);
      } finally {
        clients[laneId] = undefined;
      }
    });

  const results = await Promise.allSettled(
    Array.from({ length: config.purgeConcurrency }, (_, laneId) =>
      lane(laneId).catch((error: unknown) => {
        failed.abort();
        throw error;
      }),
    ),
  );
  throttle?.finish();
  await guard?.finish();
  if (throttle !== null) ctx.log.debug({ ...throttle.stats }, 'purge throttle');
  if (guard !== null) ctx.log.debug({ ...guard.stats, ...heldBack.summary }, 'purge latency guard');
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
  const output: RunOutput = { deleted, batches, stoppedBy: stoppedBy ?? 'drained' };
  reportStall(ctx, 'purge-expired', output, held);
  return output;
}

const UNKNOWN: DatabaseState = { replicaLagSeconds: null, vacuumRunning: null };

export function throttleSettings(config: TaskContext['config']): ThrottleSettings {
  return {
    dutyCyclePercent: config.purgeDutyCyclePercent,
    maxWalBytesPerSecond: config.purgeMaxWalBytesPerSecond,
    maxReplicaLagSeconds: config.purgeMaxReplicaLagSeconds,
    pauseOnVacuum: config.purgePauseOnVacuum,
  };
}

/** The run's throttle, or null when every brake is off. */
export function createThrottle(ctx: TaskContext, probe: (lane: number) => Promise<DatabaseState>, heldBack?: HeldBack): Throttle | null {
  const settings = throttleSettings(ctx.config);
  if (isOff(settings)) return null;
  return new Throttle(settings, {
    probe,
    onEvent: (event) => logThrottleEvent(ctx, event),
    ...(heldBack ? { onHeldBack: (brake: Brake, ms: number, lane: number) => heldBack.wait(brake, ms, lane) } : {}),
  });
}

/** What this process has already warned about: a purge runs every few minutes, the role stays the same. */
const warnedUnknown = new Set<string>();

function logThrottleEvent({ log }: TaskContext, event: ThrottleEvent): void {
  if (event.kind === 'unknown') {
    const first = !warnedUnknown.has(event.what);
    warnedUnknown.add(event.what);
    (first ? log.warn.bind(log) : log.debug.bind(log))(
      { what: event.what },
      event.what === 'replica-lag'
        ? 'replica lag is unknown (the role lacks pg_monitor / pg_read_all_stats): the purge does not pause for replica lag'
        : 'vacuum progress is unknown (the role lacks pg_monitor / pg_read_all_stats): the purge does not pause for vacuum',
    );
  } else if (event.kind === 'pause') {
    log.info({ reason: event.reason }, 'purge paused by its throttle');
  } else {
    log.info({ reason: event.reason, pausedSeconds: Math.round(event.pausedMs) / 1000 }, 'purge resumed');
  }
}

/** Replica lag and a vacuum of the table; null where the role cannot see them. */
export async function probeDatabase(client: pg.ClientBase, { config }: TaskContext): Promise<DatabaseState> {
  const { rows } = await client.query<ProbeRow>({ ...throttleProbe, values: [qualified(config.sessionTable)] });
  const row = rows[0];
  if (row === undefined || !row.privileged) return UNKNOWN;
  return { replicaLagSeconds: row.lag_seconds, vacuumRunning: row.vacuum_running };
}

async function planSlices({ pool, config }: TaskContext, count: number): Promise<Slice[]> {
  const boundaries: string[] = [];
  if (count > 1) {
    const { rows } = await pool.query<{ boundary: string }>({
      ...purgeSliceBoundaries(config.sessionTable),
      values: [config.expiredGraceSeconds, count],
    });
    boundaries.push(...rows.map((r) => r.boundary));
  }
  const edges = ['-infinity', ...boundaries, 'infinity'];
  return edges.slice(1).map((to, i) => ({ from: edges[i] ?? '-infinity', to }));
}

/** Purgeable rows now: the ETA of the foreground command. */
export async function countPurgeableSessions({ pool, config }: TaskContext): Promise<number> {
  const { rows } = await pool.query<{ n: string }>({ ...countPurgeable(config.sessionTable), values: [config.expiredGraceSeconds] });
  return Number(rows[0]?.n ?? 0);
}
