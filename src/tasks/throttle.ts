/**
 * The purge's throttle, for production databases with replicas, WAL archiving or a busy primary
 * (docs/performance.md, "Throttle"). Four independent brakes, each off or generous by default:
 *
 *   - duty cycle (JANITOR_PURGE_DUTY_CYCLE, percent): after a batch of d ms, its lane sleeps
 *     d * (100 - p) / p ms, so each lane spends at most p% of its wall time in batches;
 *   - WAL rate (JANITOR_PURGE_MAX_WAL_RATE, bytes/s): the purge's WAL since the run started may
 *     exceed rate * elapsed by at most one second's worth; beyond that every lane sleeps until it
 *     no longer does. The purge's WAL is measured, not estimated: each batch statement returns the
 *     WAL insert position before and after its delete, and the run adds up the union of those
 *     intervals (WalMeter), so two lanes' overlapping batches count once;
 *   - replica lag (JANITOR_PURGE_MAX_REPLICA_LAG): pause while any replica's write or replay lag
 *     (pg_stat_replication) exceeds the bound;
 *   - vacuum (JANITOR_PURGE_PAUSE_ON_VACUUM): pause while a vacuum of the table runs
 *     (pg_stat_progress_vacuum), as GitLab's batched background migrations do, so that the purge
 *     does not race autovacuum over the same pages.
 *
 * The pauses read the database at most once per probe interval (1 s), shared by all lanes. A role
 * without pg_monitor (pg_read_all_stats) sees NULL in those columns: the state is then unknown and
 * the purge does not pause for it (it says so once in the log). A pause or sleep ends early when
 * the run must stop (shutdown, or the time budget runs out), so a throttled run stops on time.
 *
 * Everything here but Throttle's use of its injected probe and sleep is pure and synchronous, and
 * tested without a database (test/tasks/throttle.test.ts).
 */

export interface ThrottleSettings {
  /** 1 to 100; 100 is off. */
  readonly dutyCyclePercent: number;
  /** null: off. */
  readonly maxWalBytesPerSecond: number | null;
  /** null: off. */
  readonly maxReplicaLagSeconds: number | null;
  readonly pauseOnVacuum: boolean;
}

export const THROTTLE_OFF: ThrottleSettings = { dutyCyclePercent: 100, maxWalBytesPerSecond: null, maxReplicaLagSeconds: null, pauseOnVacuum: false };

/** What the probe read from the database; null where the role cannot see it (unknown). */
export interface DatabaseState {
  /** The worst write or replay lag over the connected replicas; 0 with none or all caught up. */
  readonly replicaLagSeconds: number | null;
  readonly vacuumRunning: boolean | null;
}

export type PauseReason = 'replica-lag' | 'vacuum';

/** What made a lane wait: a sleep (duty cycle, WAL rate) or a pause. */
export type Brake = 'duty-cycle' | 'wal-rate' | PauseReason;

export const needsProbe = (s: ThrottleSettings): boolean => s.maxReplicaLagSeconds !== null || s.pauseOnVacuum;

export const isOff = (s: ThrottleSettings): boolean => s.dutyCyclePercent >= 100 && s.maxWalBytesPerSecond === null && !needsProbe(s);

/** Milliseconds a lane sleeps after a batch of batchMs so that batches fill dutyCyclePercent of its time. */
export function dutyCycleSleepMs(batchMs: number, dutyCyclePercent: number): number {
  if (dutyCyclePercent >= 100 || batchMs <= 0) return 0;
  return (batchMs * (100 - dutyCyclePercent)) / dutyCyclePercent;
}

/**
 * Milliseconds to wait before the next batch so that walBytes written in elapsedMs stays within
 * maxBytesPerSecond, allowing a burst of one second's worth (a token bucket that starts full).
 */
export function walSleepMs(walBytes: number, elapsedMs: number, maxBytesPerSecond: number | null): number {
  if (maxBytesPerSecond === null || maxBytesPerSecond <= 0) return 0;
  const allowed = maxBytesPerSecond * (elapsedMs / 1000 + 1);
  return walBytes <= allowed ? 0 : ((walBytes - allowed) / maxBytesPerSecond) * 1000;
}

/** Why the purge must pause now, or null. Unknown (null) never pauses. */
export function pauseReason(state: DatabaseState, s: ThrottleSettings): PauseReason | null {
  if (s.maxReplicaLagSeconds !== null && state.replicaLagSeconds !== null && state.replicaLagSeconds > s.maxReplicaLagSeconds) return 'replica-lag';
  if (s.pauseOnVacuum && state.vacuumRunning === true) return 'vacuum';
  return null;
}

/**
 * The WAL the purge wrote: the total length of the union of the batches' [start, end) WAL
 * intervals. Batches of different lanes overlap in time, and the WAL between their positions is
 * theirs (and, during the batch, any concurrent writer's: an over-estimate by what others wrote
 * meanwhile, the safe side for a cap). Intervals arrive roughly in order; one that ends before the
 * covered end adds only what lies beyond it.
 */
export class WalMeter {
  #covered = 0;
  #bytes = 0;

  add(start: number, end: number): void {
    if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) return;
    const from = Math.max(start, this.#covered);
    if (end > from) this.#bytes += end - from;
    this.#covered = Math.max(this.#covered, end);
  }

  get bytes(): number {
    return this.#bytes;
  }
}

export interface ThrottleDeps {
  /** Reads the database's state on the given lane's connection; only called when a pause is configured. */
  readonly probe: (lane: number) => Promise<DatabaseState>;
  /** Resolves after ms, or early (false) when signal aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<boolean>;
  readonly now?: () => number;
  readonly probeIntervalMs?: number;
  /** Told once per run and kind when the probe cannot see something, and on each pause. */
  readonly onEvent?: (event: ThrottleEvent) => void;
  /** Lane waited ms because of brake (a pause, which holds every lane, once in wall time, on the lane that resumed it). */
  readonly onHeldBack?: (brake: Brake, ms: number, lane: number) => void;
}

export type ThrottleEvent =
  | { readonly kind: 'unknown'; readonly what: 'replica-lag' | 'vacuum' }
  | { readonly kind: 'pause'; readonly reason: PauseReason }
  | { readonly kind: 'resume'; readonly reason: PauseReason; readonly pausedMs: number };

export interface ThrottleStats {
  /** Milliseconds lanes slept for the duty cycle and the WAL cap, summed over lanes. */
  readonly sleptMs: number;
  /** Milliseconds the run was paused (wall time, not per lane). */
  readonly pausedMs: number;
  readonly walBytes: number;
}

export const PROBE_INTERVAL_MS = 1000;

export function abortableSleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (completed: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(completed);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One run's throttle, shared by its lanes: await beforeBatch() before each batch, report each
 * batch with afterBatch(). The signal given to beforeBatch aborts when the run must stop; the
 * caller then checks its budget as it would without a throttle.
 */
export class Throttle {
  readonly #s: ThrottleSettings;
  readonly #probe: (lane: number) => Promise<DatabaseState>;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<boolean>;
  readonly #now: () => number;
  readonly #probeIntervalMs: number;
  readonly #onEvent: (event: ThrottleEvent) => void;
  readonly #onHeldBack: (brake: Brake, ms: number, lane: number) => void;
  readonly #startedAt: number;
  readonly #wal = new WalMeter();
  readonly #owed = new Map<number, number>();
  readonly #told = new Set<string>();
  #state: Promise<DatabaseState> | null = null;
  #stateAt = Number.NEGATIVE_INFINITY;
  #pausedSince: number | null = null;
  #pausedFor: PauseReason | null = null;
  #pausedMs = 0;
  #sleptMs = 0;

  constructor(settings: ThrottleSettings, deps: ThrottleDeps) {
    this.#s = settings;
    this.#probe = deps.probe;
    this.#sleep = deps.sleep ?? abortableSleep;
    this.#now = deps.now ?? (() => performance.now());
    this.#probeIntervalMs = deps.probeIntervalMs ?? PROBE_INTERVAL_MS;
    this.#onEvent = deps.onEvent ?? (() => {});
    this.#onHeldBack = deps.onHeldBack ?? (() => {});
    this.#startedAt = this.#now();
  }

  get stats(): ThrottleStats {
    return { sleptMs: this.#sleptMs, pausedMs: this.#pausedMs + (this.#pausedSince === null ? 0 : this.#now() - this.#pausedSince), walBytes: this.#wal.bytes };
  }

  /** A batch of lane took batchMs and wrote WAL between walStart and walEnd (bytes since 0/0). */
  afterBatch(lane: number, batchMs: number, walStart: number, walEnd: number): void {
    this.#wal.add(walStart, walEnd);
    this.#owed.set(lane, (this.#owed.get(lane) ?? 0) + dutyCycleSleepMs(batchMs, this.#s.dutyCyclePercent));
  }

  /** Waits as the settings require before lane's next batch. Returns false if signal aborted meanwhile. */
  async beforeBatch(lane: number, signal: AbortSignal): Promise<boolean> {
    const owed = this.#owed.get(lane) ?? 0;
    this.#owed.set(lane, 0);
    const wal = walSleepMs(this.#wal.bytes, this.#now() - this.#startedAt, this.#s.maxWalBytesPerSecond);
    const rest = Math.max(owed, wal);
    if (rest > 0) {
      const started = this.#now();
      const completed = await this.#sleep(rest, signal);
      const slept = this.#now() - started;
      this.#sleptMs += slept;
      this.#onHeldBack(wal > owed ? 'wal-rate' : 'duty-cycle', slept, lane);
      if (!completed) return false;
    }
    if (!needsProbe(this.#s)) return !signal.aborted;
    for (;;) {
      const reason = pauseReason(await this.#read(lane), this.#s);
      if (reason === null) {
        this.#resume(lane);
        return !signal.aborted;
      }
      if (this.#pausedSince === null) {
        this.#pausedSince = this.#now();
        this.#pausedFor = reason;
        this.#onEvent({ kind: 'pause', reason });
      }
      if (!(await this.#sleep(this.#probeIntervalMs, signal))) return false;
    }
  }

  /** Ends a pause in the books (when the run stops while paused, say). */
  finish(): void {
    this.#resume(-1);
  }

  #resume(lane: number): void {
    if (this.#pausedSince === null || this.#pausedFor === null) return;
    const pausedMs = this.#now() - this.#pausedSince;
    this.#pausedMs += pausedMs;
    this.#onHeldBack(this.#pausedFor, pausedMs, lane);
    this.#onEvent({ kind: 'resume', reason: this.#pausedFor, pausedMs });
    this.#pausedSince = null;
    this.#pausedFor = null;
  }

  /**
   * The database's state, read at most once per probe interval whatever the number of lanes, on
   * the connection of the lane that asks (idle meanwhile: it waits for the answer).
   */
  #read(lane: number): Promise<DatabaseState> {
    const now = this.#now();
    if (this.#state === null || now - this.#stateAt >= this.#probeIntervalMs) {
      this.#stateAt = now;
      // A failed probe reads as unknown, so never pauses: the batches report a database that is gone.
      this.#state = this.#probe(lane)
        .catch((): DatabaseState => ({ replicaLagSeconds: null, vacuumRunning: null }))
        .then((state) => {
          if (this.#s.maxReplicaLagSeconds !== null && state.replicaLagSeconds === null) this.#tell('replica-lag');
          if (this.#s.pauseOnVacuum && state.vacuumRunning === null) this.#tell('vacuum');
          return state;
        });
    }
    return this.#state;
  }

  #tell(what: 'replica-lag' | 'vacuum'): void {
    if (this.#told.has(what)) return;
    this.#told.add(what);
    this.#onEvent({ kind: 'unknown', what });
  }
}
