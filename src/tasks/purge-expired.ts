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
  purgeWalPosition,
  type BoundRow,
} from '../db/sql/purge-expired.ts';
import { throttleProbe, type ProbeRow } from '../db/sql/throttle.ts';
import { AdaptiveBatchSize, RunBudget, shrinkOnTimeout, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { HeldBack } from './held-back.ts';
import { aroundHeldRows, deleteInHalves, type SessionId } from './held-rows.ts';
import { createLatencyGuard, type LatencyProbe } from './latency-probe.ts';
import { isOff, Throttle, type Brake, type DatabaseState, type ThrottleEvent, type ThrottleSettings } from './throttle.ts';

const SLICES_PER_LANE = 4;

interface Slice {
  readonly from: string;
  readonly to: string;
}

interface BatchResult {
  readonly deleted: number;
  /** null: fewer rows than the batch size were left in the slice, so the slice is done. */
  readonly bound: string | null;
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

  const runBatch = async (client: pg.PoolClient, slice: Slice, lower: string, lowerInclusive: boolean, size: number): Promise<BatchResult> => {
    const started = performance.now();
    try {
      const { rows } = await client.query<BoundRow>({ ...purgeBound(table, lowerInclusive), values: [lower, slice.to, grace, size] });
      const bound = rows[0]?.bound ?? null;
      if (bound !== null && rows[0]?.advances !== true) {
        // Deleting up to a bound that is not after the cursor deletes nothing and leaves the
        // cursor where it was: every later batch would do the same until the time budget ends.
        throw new Error(`purge made no progress: its bound ${bound} is not after its cursor ${lower}; no batch would delete a row`);
      }
      const values = [lower, slice.to, grace, bound ?? 'infinity'];
      const deletedRows = await aroundHeldRows(
        ctx,
        async (exceptHeld) => (await client.query({ ...(exceptHeld ? purgeBatchExceptHeld : purgeBatch)(table, lowerInclusive), values })).rowCount ?? 0,
        async () => {
          const { rows: ids } = await client.query<{ id: SessionId }>({ ...purgeCandidates(table, lowerInclusive), values });
          return deleteInHalves(
            ctx,
            ids.map((r) => r.id),
            async (part) => (await client.query({ ...purgeIds(table), values: [part, grace] })).rowCount ?? 0,
          );
        },
      );
      const walEnd = measureWal ? ((await client.query<{ wal: number }>(purgeWalPosition)).rows[0]?.wal ?? Number.NaN) : Number.NaN;
      return { deleted: deletedRows, bound, walStart: rows[0]?.wal ?? Number.NaN, walEnd };
    } finally {
      metrics.batchDuration.observe({ task: 'purge-expired' }, (performance.now() - started) / 1000);
    }
  };

  /** Why this lane must stop before its next batch, or null. */
  const stopReason = (): StoppedBy | null => stoppedBy ?? (failed.signal.aborted ? 'shutdown' : budget.stopReason(deleted));

  const drain = async (laneId: number, client: pg.PoolClient) => {
    const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.purgeBatchMaxSize, config.batchTargetMs);
    for (let slice = slices.shift(); slice !== undefined; slice = slices.shift()) {
      let lower = slice.from;
      let lowerInclusive = true;
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
        let result: BatchResult;
        try {
          result = await runBatch(client, slice, lower, lowerInclusive, limit);
        } catch (error) {
          if (shrinkOnTimeout(error, size, metrics)) continue;
          throw error;
        }
        const durationMs = performance.now() - started;
        size.record(result.deleted, durationMs);
        throttle?.afterBatch(laneId, durationMs, result.walStart, result.walEnd);
        guard?.afterBatch(laneId, durationMs);
        deleted += result.deleted;
        batches += 1;
        metrics.sessionsDeleted.inc({ reason: 'expired' }, result.deleted);
        options.onBatch?.({ rows: result.deleted, durationMs });
        options.onProgress?.({ deleted, batches, elapsedMs: budget.elapsedMs });
        if (result.bound === null) break;
        lower = result.bound;
        lowerInclusive = false;
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
  return { deleted, batches, stoppedBy: stoppedBy ?? 'drained' };
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
