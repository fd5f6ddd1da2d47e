/**
 * A run's brakes behind one interface, consulted by the batch engine (tasks/engine.ts) between
 * batches: the throttle (duty cycle, WAL rate, replica lag, vacuum: tasks/throttle.ts) where the
 * task has one, and the latency guard (tasks/latency-guard.ts), which the freshness floor
 * (tasks/freshness.ts) sets aside while a purge is past its objective. Before a lane's batch they
 * may make it wait (or stop the run, when the run's wake signal ends a wait), and the guard may make
 * it smaller; after it they learn its duration, WAL and how long the oldest row left has waited.
 */
import type pg from 'pg';
import { qualified } from '../db/sql/identifiers.ts';
import { throttleProbe, type ProbeRow } from '../db/sql/throttle.ts';
import type { QualifiedName } from '../config.ts';
import { scheduledTask, type ScheduledTaskName } from '../queues.ts';
import type { TaskContext } from './context.ts';
import { FreshnessFloor } from './freshness.ts';
import type { HeldBack } from './held-back.ts';
import type { LatencyGuard } from './latency-guard.ts';
import { createLatencyGuard, type LatencyProbe } from './latency-probe.ts';
import { isOff, Throttle, type Brake, type DatabaseState, type ThrottleEvent, type ThrottleSettings } from './throttle.ts';

/** For tests: the throttle's view of the database, and the latency guard's probe, instead of the real ones. */
export interface BrakeDeps {
  readonly probe?: (lane: number) => Promise<DatabaseState>;
  readonly latencyProbe?: LatencyProbe;
}

export class RunBrakes {
  readonly throttle: Throttle | null;
  readonly guard: LatencyGuard | null;
  readonly #heldBack: HeldBack;
  readonly #freshness: FreshnessFloor | null;

  constructor(throttle: Throttle | null, guard: LatencyGuard | null, heldBack: HeldBack, freshness: FreshnessFloor | null = null) {
    this.throttle = throttle;
    this.guard = guard;
    this.#heldBack = heldBack;
    this.#freshness = freshness;
  }

  /** Whether a brake may wait: the run then needs a wake signal at the end of its time budget. */
  get any(): boolean {
    return this.throttle !== null || this.guard !== null;
  }

  /** The guard's baseline, learnt (LatencyGuard.start) while the lanes open and the throttle takes its first reading. */
  #started: Promise<void> = Promise.resolve();

  /**
   * Starts learning the guard's baseline; the first batch waits for it (beforeBatch). Not awaited
   * here: its five probes (5-15 ms) run on the guard's connection beside what a lane does before
   * its first batch (its connection's settings, the throttle's first probe), a few percent of a
   * small run saved (docs/performance.md).
   */
  start(): void {
    this.#started = this.guard?.start() ?? Promise.resolve();
    // Awaited by the first batch, maybe later than it settles: never an unhandled rejection meanwhile.
    this.#started.catch(() => {});
  }

  /** Waits as the brakes require before lane's next batch. false: woken early, the run must stop. */
  async beforeBatch(lane: number, wake: AbortSignal): Promise<boolean> {
    if (this.throttle !== null && !(await this.throttle.beforeBatch(lane, wake))) return false;
    await this.#started;
    return this.guard === null || (await this.guard.beforeBatch(lane));
  }

  /** Nobody writes on the server now, as the latency guard reads it (LatencyGuard.nobodyWrites); no guard: unknown, false. */
  get nobodyWrites(): boolean {
    return this.guard?.nobodyWrites === true;
  }

  /** The next batch's size: `unguarded` as the guard scales it (not below min), counted as held back when smaller. */
  batchRows(lane: number, unguarded: number, min: number): number {
    const size = this.guard === null ? unguarded : this.guard.batchRows(unguarded, Math.min(unguarded, min));
    this.#heldBack.batch(lane, size < unguarded);
    return size;
  }

  /**
   * A batch of lane worked workMs (lock waits excluded), deleted `deleted` rows, wrote the WAL
   * between walStart and walEnd, and left its oldest row waiting oldestWaitingSeconds (FreshnessFloor.record).
   */
  afterBatch(lane: number, workMs: number, deleted: number, walStart: number, walEnd: number, oldestWaitingSeconds?: number | null): void {
    this.throttle?.afterBatch(lane, workMs, walStart, walEnd);
    if (this.#freshness !== null) {
      this.#freshness.record(lane, oldestWaitingSeconds);
      this.guard?.standAside(this.#freshness.overriding);
    }
    this.guard?.afterBatch(lane, workMs, deleted > 0);
  }

  async finish(ctx: TaskContext, task: ScheduledTaskName): Promise<void> {
    // A run whose lanes ended before the baseline did (nothing to open, a failure): the guard's
    // connection goes back only once its probes are done.
    await this.#started;
    this.throttle?.finish();
    this.#freshness?.finish();
    await this.guard?.finish();
    // 'purge throttle', 'purge latency guard', 'reap latency guard': the messages operators grep for.
    const verb = task.split('-')[0] ?? task;
    if (this.throttle !== null) ctx.log.debug({ task, ...this.throttle.stats }, `${verb} throttle`);
    if (this.guard !== null) ctx.log.debug({ task, ...this.guard.stats, ...this.#heldBack.summary }, `${verb} latency guard`);
  }
}

/**
 * The brakes of a run of `task`: its throttle when `throttled` (and a brake is on), and the latency
 * guard. `client(lane)`: the lane's connection, where the throttle's probe runs.
 */
export function createBrakes(
  ctx: TaskContext,
  task: ScheduledTaskName,
  throttled: boolean,
  heldBack: HeldBack,
  wake: AbortSignal,
  client: (lane: number) => pg.ClientBase | undefined,
  deps: BrakeDeps = {},
): RunBrakes {
  const probe =
    deps.probe ??
    ((lane: number) => {
      const connection = client(lane);
      return connection === undefined ? Promise.resolve(UNKNOWN) : probeDatabase(connection, ctx, scheduledTask(ctx.config, task).table?.table);
    });
  const throttle = throttled ? createThrottle(ctx, probe, heldBack) : null;
  const guard = createLatencyGuard(ctx, task, heldBack, wake, deps.latencyProbe);
  return new RunBrakes(throttle, guard, heldBack, guard === null ? null : createFreshnessFloor(ctx, task));
}

/** The purge's freshness floor (tasks/freshness.ts), or null: JANITOR_PURGE_FRESHNESS_OBJECTIVE=off, or a task that is no purge. */
function createFreshnessFloor({ config, log, metrics }: TaskContext, task: ScheduledTaskName): FreshnessFloor | null {
  const objective = config.purgeFreshnessObjectiveSeconds;
  if (objective === null || scheduledTask(config, task).reason !== 'expired') return null;
  return new FreshnessFloor(objective, {
    onStart: (waitedSeconds) =>
      log.warn(
        { task, waitedSeconds: Math.round(waitedSeconds), objectiveSeconds: objective },
        `${task}: the oldest row it has left has waited ${Math.round(waitedSeconds)} s past its expiry, more than JANITOR_PURGE_FRESHNESS_OBJECTIVE (${objective} s): the latency guard stands aside and the purge goes at full speed until it is back within the objective (session_janitor_freshness_override_seconds_total)`,
      ),
    onEnd: (ms) =>
      log.info(
        { task, overriddenSeconds: Math.round(ms) / 1000 },
        `${task} is back within JANITOR_PURGE_FRESHNESS_OBJECTIVE after ${(ms / 1000).toFixed(1)} s at full speed: the latency guard guards again`,
      ),
    onOverride: (ms) => metrics.freshnessOverride.inc({ task }, ms / 1000),
  });
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

/** Replica lag and a vacuum of the table (the sessions table, or an extra table's run's); null where the role cannot see them. */
export async function probeDatabase(client: pg.ClientBase, { config }: TaskContext, table: QualifiedName = config.sessionTable): Promise<DatabaseState> {
  const { rows } = await client.query<ProbeRow>({ ...throttleProbe, values: [qualified(table)] });
  const row = rows[0];
  if (row === undefined || !row.privileged) return UNKNOWN;
  return { replicaLagSeconds: row.lag_seconds, vacuumRunning: row.vacuum_running };
}
