/**
 * The batch engine: the one loop of every scheduled deleting task (purge-expired, reap-idle). A
 * task says how to take one batch from where a lane stands (a Lane); the engine owns the rest, the
 * same for every task:
 *
 *   - lanes: `lanes` pooled connections at once (tasks/connection.ts), each walking its own work;
 *     a lane that fails stops the others at their next batch, then the run rethrows its error;
 *   - the run's budget (time, rows, shutdown), checked before every batch;
 *   - the brakes (tasks/brakes.ts), consulted between batches;
 *   - the task's pause (tasks/pause.ts), read before every batch: a paused task's run stops at its
 *     next batch boundary, as on shutdown (stoppedBy 'paused');
 *   - the blast-radius guard (tasks/blast-guard.ts), before the first batch: a run that would
 *     delete too many rows retroactively deletes nothing (stoppedBy 'blast-radius');
 *   - the clock check (tasks/clock-check.ts): while the database's clock and the process's
 *     disagree, the run stops before its next batch (stoppedBy 'clock-skew');
 *   - the adaptive batch size (tasks/batching.ts), halved on a statement timeout and the batch
 *     tried again, and capped by the row budget;
 *   - held rows: the by-id fallback's share of the run's time, the ids left, and the lock waits
 *     kept out of the batch duration the size and the brakes learn from (tasks/held-rows.ts);
 *   - accounting: the batch duration and deleted-rows metrics, onBatch, onProgress, the held-back
 *     time (tasks/held-back.ts), and a run that deleted nothing while rows were left (tasks/stall.ts).
 *
 * A Lane moves its own position only once a batch has committed, so a batch the engine tries again
 * (after a statement timeout) starts where the failed one did.
 */
import type pg from 'pg';
import { tableLabel } from '../config.ts';
import { scheduledTask, type ScheduledTaskName } from '../queues.ts';
import { AdaptiveBatchSize, RunBudget, shrinkOnTimeout, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import { createBrakes, type BrakeDeps } from './brakes.ts';
import { withConnection } from './connection.ts';
import type { TaskContext } from './context.ts';
import { HeldBack } from './held-back.ts';
import { HeldRows, type LockWaits } from './held-rows.ts';
import { checkBlastRadius, recordDrainedRun } from './blast-guard.ts';
import { PauseCheck } from './pause.ts';
import { reportStall } from './stall.ts';

/** What one batch did. */
export interface BatchStep {
  readonly deleted: number;
  /** What the adaptive size learns from: the rows (or, for a walk over id ranges, the ids) the batch covered. */
  readonly covered: number;
  /** The lane has nothing left. */
  readonly done: boolean;
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
}

/** Where the lane's batches take their budget and held-rows account from. */
export interface BatchScope {
  readonly held: HeldRows;
  readonly waits: LockWaits;
}

export interface Lane {
  /** One batch of at most `limit` rows (or ids) from where the lane stands. */
  batch(limit: number, scope: BatchScope): Promise<BatchStep>;
  /** After the lane's last batch (not after a failure). */
  finish?(): Promise<void>;
  /** The fraction done when the run started (a reap resumes a pass part-way): the progress ETA counts from there. */
  readonly fractionAtStart?: number;
}

/** A run of a scheduled task: its reason, brakes, lanes and table are its descriptor's (queues.ts scheduledTasks). */
export interface BatchTask {
  readonly task: ScheduledTaskName;
  /** The adaptive size's upper bound (rows or ids a batch). */
  readonly maxSize: number;
  /** Opens lane `laneId` on its connection (or null: nothing to do on it). */
  readonly openLane: (laneId: number, client: pg.PoolClient) => Promise<Lane | null>;
}

export async function runBatches(ctx: TaskContext, spec: BatchTask, options: RunOptions = {}, deps: BrakeDeps = {}): Promise<RunOutput> {
  const { config, metrics } = ctx;
  const { reason, throttled, lanes, table } = scheduledTask(config, spec.task);
  // An extra table's rows are no sessions: only the per-table counter has them.
  const countDeleted = (rows: number) => {
    if (table === undefined) metrics.sessionsDeleted.inc({ reason }, rows);
    metrics.rowsDeleted.inc({ table: table?.label ?? tableLabel(config.sessionTable), reason }, rows);
  };
  if (ctx.clock?.holding === true) {
    ctx.log.warn(
      { task: spec.task },
      `${spec.task} holds: the database's clock and this process's disagree (session_janitor_clock_skew_seconds); this run deletes nothing`,
    );
    return { deleted: 0, batches: 0, stoppedBy: 'clock-skew' };
  }
  // An extra table's purge is the purge: `pause purge-expired` (and `all`) pause it too.
  const pause = new PauseCheck(table === undefined ? spec.task : 'purge-expired');
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
  const held = new HeldRows(() => budget.msLeft, config.lockTimeoutMs);
  const heldBack = options.heldBack ?? new HeldBack(metrics, spec.task);
  const failed = new AbortController();
  const clients: Array<pg.PoolClient | undefined> = [];
  // Ends a brake's sleep or pause early: shutdown, a failed lane, or the end of the time budget.
  const wake = AbortSignal.any([failed.signal, AbortSignal.timeout(Math.max(1, Math.ceil(budget.msLeft))), ...(options.signal ? [options.signal] : [])]);
  const brakes = createBrakes(ctx, spec.task, throttled, heldBack, wake, (lane) => clients[lane], deps);
  await brakes.start();
  let deleted = 0;
  let batches = 0;
  let stoppedBy: StoppedBy | null = null;

  /** Why a lane must stop before its next batch, or null. */
  const stopReason = (): StoppedBy | null => stoppedBy ?? (failed.signal.aborted ? 'shutdown' : budget.stopReason(deleted));

  const drain = async (laneId: number, lane: Lane, client: pg.PoolClient) => {
    const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, spec.maxSize, config.batchTargetMs);
    const scope: BatchScope = { held, waits: { ms: 0 } };
    for (;;) {
      let stop = stopReason();
      if (stop === null && ctx.clock?.holding === true) stop = 'clock-skew';
      if (stop === null && (await pause.paused(client))) stop = 'paused';
      // Woken early: the reason is one of the budget's, or a failed lane.
      if (stop === null && !(await brakes.beforeBatch(laneId, wake))) stop = stopReason() ?? 'time-budget';
      if (stop !== null) {
        stoppedBy ??= stop;
        return;
      }
      const limit = brakes.batchRows(laneId, Math.max(1, Math.min(size.size, budget.rowsLeft(deleted))), config.batchMinSize);
      const started = performance.now();
      const waitedBefore = scope.waits.ms;
      let step: BatchStep;
      try {
        step = await lane.batch(limit, scope);
      } catch (error) {
        if (shrinkOnTimeout(error, size, metrics)) continue;
        throw error;
      } finally {
        metrics.batchDuration.observe({ task: spec.task }, (performance.now() - started) / 1000);
      }
      const durationMs = performance.now() - started;
      const workMs = Math.max(0, durationMs - (scope.waits.ms - waitedBefore));
      size.record(step.covered, workMs);
      brakes.afterBatch(laneId, workMs, step.deleted, step.walStart ?? Number.NaN, step.walEnd ?? Number.NaN, step.done ? null : step.oldestWaitingSeconds);
      deleted += step.deleted;
      batches += 1;
      countDeleted(step.deleted);
      options.onBatch?.({ rows: step.deleted, durationMs });
      options.onProgress?.({
        deleted,
        batches,
        elapsedMs: budget.elapsedMs,
        ...(step.fraction === undefined ? {} : { fraction: step.fraction }),
        ...(lane.fractionAtStart === undefined ? {} : { fractionAtStart: lane.fractionAtStart }),
      });
      if (step.done) return;
    }
  };

  const runLane = (laneId: number) =>
    withConnection(ctx, async (client) => {
      clients[laneId] = client;
      try {
        const lane = await spec.openLane(laneId, client);
        if (lane === null) return;
        await drain(laneId, lane, client);
        await lane.finish?.();
      } finally {
        clients[laneId] = undefined;
      }
    });

  const results = await Promise.allSettled(
    Array.from({ length: lanes(config) }, (_, laneId) =>
      runLane(laneId).catch((error: unknown) => {
        failed.abort();
        throw error;
      }),
    ),
  );
  await brakes.finish(ctx, spec.task);
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
  const output: RunOutput = { deleted, batches, stoppedBy: stoppedBy ?? 'drained' };
  if (output.stoppedBy === 'drained' && guard !== null) await recordDrainedRun(ctx.pool, spec.task, guard.startedAt);
  if (output.stoppedBy === 'paused') ctx.log.info({ task: spec.task, deleted, batches }, `${spec.task} was paused: the run stopped at a batch boundary`);
  reportStall(ctx, spec.task, output, held);
  return output;
}
