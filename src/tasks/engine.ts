/**
 * The batch engine: the one batch loop of every deleting task, the scheduled ones (purge-expired,
 * the extra tables' purges, reap-idle) and the revocations. A task says how to take one batch from
 * where a lane stands (a Lane); the engine owns the rest.
 *
 * The loop itself (LaneDriver), the same for every task:
 *   - lanes: pooled connections (tasks/connection.ts), each walking its own work, all at once
 *     ('always': a scheduled run's pool is sized for its lanes, tasks/pool-size.ts) or, past the
 *     first, only on connections the pool can spare and given back as soon as somebody waits for
 *     one ('spare': a revocation never makes another job wait); a lane that fails stops the others
 *     at their next batch, then the run rethrows its error;
 *   - the adaptive batch size (tasks/batching.ts), halved on a statement timeout and the batch tried
 *     again; other errors the lane may ask to try again after a delay (a revocation's lock retries);
 *   - the lock waits a lane reports kept out of the batch duration the size and the brakes learn from;
 *   - accounting: the batch duration and deleted-rows metrics, onBatch, onProgress.
 *
 * A scheduled run (runBatches) adds, from the task's descriptor (queues.ts):
 *   - the run's budget (time, rows, shutdown), checked before every batch;
 *   - the brakes (tasks/brakes.ts), consulted between batches;
 *   - the task's pause (tasks/pause.ts), read before every batch (or, for a task whose batches
 *     read it in their first statement, by the batch: the purge's): a paused task's run stops at
 *     its next batch boundary, as on shutdown (stoppedBy 'paused');
 *   - the blast-radius guard (tasks/blast-guard.ts), before the first batch: a run that would
 *     delete too many rows retroactively deletes nothing (stoppedBy 'blast-radius');
 *   - the clock check (tasks/clock-check.ts): while the database's clock and the process's
 *     disagree, the run stops before its next batch (stoppedBy 'clock-skew');
 *   - held rows: the by-id fallback's share of the run's time and the ids left (tasks/held-rows.ts);
 *   - the held-back time (tasks/held-back.ts), and a run that deleted nothing while rows were left
 *     (tasks/stall.ts).
 *
 * A Lane moves its own position only once a batch has committed, so a batch the engine tries again
 * (after a statement timeout, or a lane's retry) starts where the failed one did.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { tableLabel, type PurgeTable } from '../config.ts';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import type { DeleteReason } from '../metrics.ts';
import { scheduledTask, type ScheduledTaskName } from '../queues.ts';
import { AdaptiveBatchSize, RunBudget, type Progress, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import { createBrakes, type BrakeDeps } from './brakes.ts';
import { spareConnection, withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { HeldBack } from './held-back.ts';
import { HeldRows, type LockWaits } from './held-rows.ts';
import { checkBlastRadius, recordDrainedRun } from './blast-guard.ts';
import { PauseCheck, pauseOf } from './pause.ts';
import { reportStall } from './stall.ts';

/** What one batch did. */
export interface BatchStep {
  readonly deleted: number;
  /** What the adaptive size learns from: the rows (or, for a walk over id ranges, the ids) the batch covered. */
  readonly covered: number;
  /** The lane has nothing left. */
  readonly done: boolean;
  /**
   * false: the lane ran no batch (it found its work already done, or only checked that it was):
   * neither a batch nor its duration is counted.
   */
  readonly counted?: boolean;
  /** WAL positions around the delete (bytes since 0/0), for the throttle's WAL cap; NaN when not read. */
  readonly walStart?: number;
  readonly walEnd?: number;
  /**
   * Seconds the oldest row the lane has left has waited past its expiry (and grace), by the
   * database's clock, for the freshness floor (tasks/freshness.ts): undefined when the batch cannot
   * tell, null when nothing the lane has left has an age.
   */
  readonly oldestWaitingSeconds?: number | null;
  /** 0..1 of the work known at the start, when the task can tell (progress). */
  readonly fraction?: number;
  /** The task was paused when the batch began (BatchTask.readsPause): it deleted nothing, the run stops. */
  readonly paused?: boolean;
}

/** What a lane's batches share with the engine: the lock waits to leave out of their duration. */
export interface LaneScope {
  readonly waits: LockWaits;
}

/** A scheduled run's scope: also the held-rows account its batches take their share from. */
export interface BatchScope extends LaneScope {
  readonly held: HeldRows;
  /** Nobody writes on the server now (RunBrakes.nobodyWrites). */
  readonly idle: () => boolean;
}

export interface Lane<S extends LaneScope = BatchScope> {
  /** One batch of at most `limit` rows (or ids) from where the lane stands. */
  batch(limit: number, scope: S): Promise<BatchStep>;
  /**
   * batch() failed with `error` (not a statement timeout: the engine shrinks those itself), its
   * `attempt`th failure in a row: the milliseconds to wait before trying the same batch again, or
   * null to fail the run. Absent: every such error fails the run.
   */
  retryAfter?(error: unknown, attempt: number): number | null;
  /** The engine halved the lane's size after a statement timeout and tries the batch again. */
  shrunk?(): void;
  /** After the lane's last batch (not after a failure). */
  finish?(): Promise<void>;
  /** The lane holds work it took from a list it shares with others: its connection is not given back before it is done ('spare'). */
  readonly holding?: boolean;
  /** The fraction done when the run started (a reap resumes a pass part-way): the progress ETA counts from there. */
  readonly fractionAtStart?: number;
}

/** How the driver runs one task's lanes. */
export interface LanePlan<S extends LaneScope> {
  /** The batch-duration metric's task label. */
  readonly task: string;
  readonly lanes: number;
  /** See the top of this file. */
  readonly extraLanes: 'always' | 'spare';
  /** 'spare': whether another lane would find work (no connection is taken for none). */
  readonly moreWork?: () => boolean;
  /** Opens lane `laneId` on its connection (or null: nothing to do on it). */
  readonly openLane: (laneId: number, client: pg.PoolClient) => Promise<Lane<S> | null>;
  /** A new lane's adaptive size. */
  readonly size: () => AdaptiveBatchSize;
  /** A new lane's scope. */
  readonly scope: () => S;
  /** Why the lane must stop before its next batch, or null; may wait first (the brakes). */
  readonly before: (laneId: number, client: pg.PoolClient) => Promise<StoppedBy | null>;
  /** The lane's size's upper bound for its next batch (AdaptiveBatchSize.capAt; absent: the size's own). */
  readonly ceiling?: (laneId: number) => number;
  /** The next batch's limit from the lane's size (absent: the size). */
  readonly limit?: (laneId: number, size: number) => number;
  /** A counted batch of the lane worked workMs (its lock waits left out). */
  readonly after?: (laneId: number, step: BatchStep, workMs: number) => void;
  readonly countDeleted: (rows: number) => void;
}

type DriverOptions = Pick<RunOptions, 'signal' | 'onBatch' | 'onProgress'>;

/** The one batch loop: runs a plan's lanes to their end, or to the first lane that fails. */
export class LaneDriver<S extends LaneScope> {
  deleted = 0;
  batches = 0;
  stoppedBy: StoppedBy | null = null;
  /** Aborted when a lane fails: the others stop before their next batch. */
  readonly failed = new AbortController();
  readonly #clients = new Map<number, pg.PoolClient>();
  readonly #ctx: TaskContext;
  readonly #plan: LanePlan<S>;
  readonly #options: DriverOptions;
  readonly #startedAt = performance.now();
  #failure: { error: unknown } | undefined;

  constructor(ctx: TaskContext, plan: LanePlan<S>, options: DriverOptions = {}) {
    this.#ctx = ctx;
    this.#plan = plan;
    this.#options = options;
  }

  /** Lane's connection while it runs (the throttle probes on it). */
  client(lane: number): pg.PoolClient | undefined {
    return this.#clients.get(lane);
  }

  async run(): Promise<void> {
    const plan = this.#plan;
    // Each lane's promise is handled the moment it exists: a helper can fail while another lane
    // still runs, and a rejection without a handler by then would end the process.
    const lanes: Array<Promise<void>> = [];
    const settle = (running: Promise<void>) => {
      lanes.push(
        running.catch((error: unknown) => {
          this.#failure ??= { error };
          this.failed.abort();
        }),
      );
    };
    if (plan.extraLanes === 'always') {
      for (let laneId = 0; laneId < plan.lanes; laneId += 1) settle(withConnection(this.#ctx, (client) => this.#lane(laneId, client)));
    } else {
      // The extra lanes start once the first has its connection and its work, while work is left
      // and the pool can spare a connection now, before the first lane's first batch.
      settle(
        withConnection(this.#ctx, (client) =>
          this.#lane(0, client, () => {
            for (let laneId = 1; laneId < plan.lanes && (plan.moreWork?.() ?? true) && spareConnection(this.#ctx.pool); laneId += 1)
              settle(this.#spareLane(laneId));
          }),
        ),
      );
    }
    // Settled promises: none rejects. The extra lanes are in the list before the first one settles.
    for (let i = 0; i < lanes.length; i += 1) await lanes[i];
    if (this.#failure) throw this.#failure.error;
  }

  /** A lane on a connection the pool could spare: one it cannot open is no failure, the other lanes do its share. */
  #spareLane(laneId: number): Promise<void> {
    return this.#ctx.pool.connect().then(
      (client) => withConnection(this.#ctx, () => this.#lane(laneId, client), client),
      (error: unknown) => this.#ctx.log.debug({ err: error, lane: laneId }, 'no spare connection for another lane'),
    );
  }

  async #lane(laneId: number, client: pg.PoolClient, opened?: () => void): Promise<void> {
    this.#clients.set(laneId, client);
    try {
      if (this.#givesBack(laneId)) return;
      const lane = await this.#plan.openLane(laneId, client);
      if (lane === null) return;
      opened?.();
      await this.#drain(laneId, lane, client);
      await lane.finish?.();
    } finally {
      this.#clients.delete(laneId);
    }
  }

  /**
   * A spare connection goes back, between two batches, to whoever waits for one; one that opened
   * only after somebody began to wait goes before the lane takes any work.
   */
  #givesBack(laneId: number): boolean {
    return laneId > 0 && this.#plan.extraLanes === 'spare' && this.#ctx.pool.waitingCount > 0;
  }

  /** The lane's batches until it is done or must stop. */
  async #drain(laneId: number, lane: Lane<S>, client: pg.PoolClient): Promise<void> {
    const { metrics } = this.#ctx;
    const plan = this.#plan;
    const size = plan.size();
    const scope = plan.scope();
    let failures = 0;
    for (;;) {
      if (this.failed.signal.aborted) return;
      if (lane.holding !== true && this.#givesBack(laneId)) return;
      const stop = this.stoppedBy ?? (await plan.before(laneId, client));
      if (stop !== null) {
        this.stoppedBy ??= stop;
        return;
      }
      if (plan.ceiling) size.capAt(plan.ceiling(laneId));
      const limit = plan.limit?.(laneId, size.size) ?? size.size;
      const started = performance.now();
      const waitedBefore = scope.waits.ms;
      let step: BatchStep;
      try {
        step = await lane.batch(limit, scope);
      } catch (error) {
        metrics.batchDuration.observe({ task: plan.task }, (performance.now() - started) / 1000);
        // A smaller batch after a statement timeout is a new batch; a retry is the same one again.
        if (sqlState(error) === SQLSTATE.queryCanceled && !size.atMinimum) {
          metrics.errors.inc({ kind: 'batch-timeout' });
          size.timedOut();
          lane.shrunk?.();
          failures = 0;
          continue;
        }
        failures += 1;
        const delayMs = lane.retryAfter?.(error, failures) ?? null;
        if (delayMs === null) throw error;
        await sleep(delayMs, undefined, { signal: AbortSignal.any([this.failed.signal, ...(this.#options.signal ? [this.#options.signal] : [])]) }).catch(
          () => {},
        );
        continue;
      }
      failures = 0;
      if (step.paused === true) {
        this.stoppedBy ??= 'paused';
        return;
      }
      const durationMs = performance.now() - started;
      if (step.counted !== false) {
        metrics.batchDuration.observe({ task: plan.task }, durationMs / 1000);
        const workMs = Math.max(0, durationMs - (scope.waits.ms - waitedBefore));
        size.record(step.covered, workMs);
        plan.after?.(laneId, step, workMs);
        this.deleted += step.deleted;
        this.batches += 1;
        plan.countDeleted(step.deleted);
        this.#options.onBatch?.({ rows: step.deleted, durationMs });
        this.#options.onProgress?.(this.#progress(step, lane));
      }
      if (step.done) return;
    }
  }

  #progress(step: BatchStep, lane: Lane<S>): Progress {
    return {
      deleted: this.deleted,
      batches: this.batches,
      elapsedMs: performance.now() - this.#startedAt,
      ...(step.fraction === undefined ? {} : { fraction: step.fraction }),
      ...(lane.fractionAtStart === undefined ? {} : { fractionAtStart: lane.fractionAtStart }),
    };
  }
}

/**
 * Counts a task's deleted rows: session_janitor_rows_deleted_total{table, reason}, and for the
 * sessions table session_janitor_sessions_deleted_total{reason} (an extra table's rows, codes or
 * flows, are no sessions: only the per-table counter has them).
 */
export function deletedRowsCounter({ config, metrics }: TaskContext, reason: DeleteReason, table?: PurgeTable): (rows: number) => void {
  return (rows) => {
    if (table === undefined) metrics.sessionsDeleted.inc({ reason }, rows);
    metrics.rowsDeleted.inc({ table: table?.label ?? tableLabel(config.sessionTable), reason }, rows);
  };
}

/** A run of a scheduled task: its reason, brakes, lanes and table are its descriptor's (queues.ts scheduledTasks). */
export interface BatchTask {
  readonly task: ScheduledTaskName;
  /** The adaptive size's upper bound (rows or ids a batch). */
  readonly maxSize: number;
  /**
   * A higher bound while nobody writes, as the latency guard sees it (LatencyGuard.nobodyWrites),
   * for a task whose maxSize is there for the auth service's commits (the purge's): with nobody
   * to slow down, fewer and larger batches are faster (docs/performance.md). Absent: maxSize.
   */
  readonly idleMaxSize?: number;
  /** Opens lane `laneId` on its connection (or null: nothing to do on it). */
  readonly openLane: (laneId: number, client: pg.PoolClient) => Promise<Lane | null>;
  /** Every batch of the lanes reads the task's pause in its first statement (BatchStep.paused): the engine reads it only at the start. */
  readonly readsPause?: boolean;
}

export async function runBatches(ctx: TaskContext, spec: BatchTask, options: RunOptions = {}, deps: BrakeDeps = {}): Promise<RunOutput> {
  const { config, metrics } = ctx;
  const descriptor = scheduledTask(config, spec.task);
  const { reason, throttled, lanes, table } = descriptor;
  if (ctx.clock?.holding === true) {
    ctx.log.warn(
      { task: spec.task },
      `${spec.task} holds: the database's clock and this process's disagree (session_janitor_clock_skew_seconds); this run deletes nothing`,
    );
    return { deleted: 0, batches: 0, stoppedBy: 'clock-skew' };
  }
  const pause = new PauseCheck(pauseOf(descriptor));
  // A run that starts paused opens no lane and starts no brake.
  if (await pause.paused(ctx.pool)) {
    ctx.log.info({ task: spec.task }, `${spec.task} is paused (session-janitor status says by whom, why and until when): this run deletes nothing`);
    return { deleted: 0, batches: 0, stoppedBy: 'paused' };
  }
  // The blast-radius guard watches the sessions table, whose rows are the users' logins; an extra
  // table's rows (codes, flows) are short-lived by design and have no drained-run history of their own.
  const guard = table === undefined ? await checkBlastRadius(ctx, spec.task) : null;
  if (guard !== null) metrics.blastRadiusStopped.set({ task: spec.task }, guard.stop === null ? 0 : 1);
  if (guard?.stop) {
    ctx.log.error(
      { task: spec.task, fraction: Math.round(guard.stop.fraction * 1000) / 1000, blastRadius: config.blastRadius },
      `${spec.task} stopped before deleting anything: ${(guard.stop.fraction * 100).toFixed(1)}% of the table's rows would go that its last drained run, under the settings of now, would already have deleted (a clock or timestamps that jumped, or a setting changed: the idle timeout, the grace), more than JANITOR_BLAST_RADIUS; it stays stopped until \`session-janitor confirm ${spec.task} --reason ...\` or the settings change; see the runbook, SessionJanitorBlastRadiusStop`,
    );
    return { deleted: 0, batches: 0, stoppedBy: 'blast-radius' };
  }
  const budget = new RunBudget(config.maxRunSeconds, config.maxRunRows, options.signal);
  const idleMaxSize = spec.idleMaxSize;
  const held = new HeldRows(() => budget.msLeft, config.lockTimeoutMs);
  const heldBack = options.heldBack ?? new HeldBack(metrics, spec.task);
  const driver: LaneDriver<BatchScope> = new LaneDriver(
    ctx,
    {
      task: spec.task,
      lanes: lanes(config),
      extraLanes: 'always',
      openLane: spec.openLane,
      size: () => new AdaptiveBatchSize(config.batchSize, config.batchMinSize, Math.max(spec.maxSize, idleMaxSize ?? spec.maxSize), config.batchTargetMs),
      ...(idleMaxSize === undefined ? {} : { ceiling: () => (brakes.nobodyWrites ? idleMaxSize : spec.maxSize) }),
      scope: () => ({ held, waits: { ms: 0 }, idle: () => brakes.nobodyWrites }),
      before: async (laneId, client) => {
        const stop = budget.stopReason(driver.deleted);
        if (stop !== null) return stop;
        if (ctx.clock?.holding === true) return 'clock-skew';
        if (spec.readsPause !== true && (await pause.paused(client))) return 'paused';
        // Woken early: the reason is one of the budget's, or a failed lane.
        if (!(await brakes.beforeBatch(laneId, wake))) return budget.stopReason(driver.deleted) ?? (driver.failed.signal.aborted ? 'shutdown' : 'time-budget');
        return null;
      },
      limit: (laneId, size) => brakes.batchRows(laneId, Math.max(1, Math.min(size, budget.rowsLeft(driver.deleted))), config.batchMinSize),
      after: (laneId, step, workMs) =>
        brakes.afterBatch(laneId, workMs, step.deleted, step.walStart ?? Number.NaN, step.walEnd ?? Number.NaN, step.done ? null : step.oldestWaitingSeconds),
      countDeleted: deletedRowsCounter(ctx, reason, table),
    },
    options,
  );
  // Ends a brake's sleep or pause early: shutdown, a failed lane, or the end of the time budget.
  const wake = AbortSignal.any([driver.failed.signal, AbortSignal.timeout(Math.max(1, Math.ceil(budget.msLeft))), ...(options.signal ? [options.signal] : [])]);
  const brakes = createBrakes(ctx, spec.task, throttled, heldBack, wake, (lane) => driver.client(lane), deps);
  brakes.start();
  try {
    await driver.run();
  } finally {
    await brakes.finish(ctx, spec.task);
  }
  const { deleted, batches } = driver;
  const output: RunOutput = { deleted, batches, stoppedBy: driver.stoppedBy ?? 'drained' };
  if (output.stoppedBy === 'drained' && guard !== null) await recordDrainedRun(ctx.pool, spec.task, guard.startedAt);
  if (output.stoppedBy === 'paused') ctx.log.info({ task: spec.task, deleted, batches }, `${spec.task} was paused: the run stopped at a batch boundary`);
  reportStall(ctx, spec.task, output, held);
  return output;
}
