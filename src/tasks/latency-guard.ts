/**
 * The latency guard (JANITOR_LATENCY_GUARD, docs/performance.md "Latency guard"): the purge and the
 * reaper back off while they slow down the auth service's commits, and go at full speed while they
 * do not.
 *
 * The cause it watches (the wait-event study of docs/performance.md): the auth service's commits
 * wait for the WAL flush, and that flush carries the WAL of the janitor's batches too (committed
 * asynchronously, so nobody flushes it but the next synchronous commit or the WAL writer). The
 * signal is one tiny synchronous write of the janitor's own, timed (db/sql/latency-guard.ts): a
 * commit that feels what every commit feels right now.
 *
 *   - Baseline: the median of BASELINE_PROBES probes before the first batch, then moved towards
 *     each probe taken after the janitor has paused for SETTLE_MS (its WAL flushed by then): what
 *     the others' commits cost without it. A busy 9 a.m. raises the baseline with it, so the guard
 *     does not hold the purge back for a load it does not cause.
 *   - Someone to protect: the probe alone cannot tell 3 a.m. from 9 a.m. (at 3 a.m. the janitor's
 *     own WAL slows the probe's commit as much, with no commit of anyone else to slow down: measured,
 *     a purge held back to 0.07 of its speed for nobody). So the guard holds back only while both
 *     signs say someone writes:
 *       - the auth service writes to the sessions table: at least MIN_FOREGROUND_WRITES_PER_SECOND
 *         rows inserted or updated a second, from the cumulative statistics (db/sql/latency-guard.ts;
 *         the janitor only deletes), over at least ACTIVITY_SPAN_MS; kept per pool between runs
 *         (ActivityTracker). It lags the writes by a second or more, and a process's first run has
 *         no rate for 1.5 s (unknown counts as writing);
 *       - someone writes now: the server's next transaction id, read with each probe, moved by more
 *         than the janitor's own ids over the last XID_SPAN_MS (XidWindow, per pool). It moves at
 *         once: a process's first run knows from its baseline probes' milliseconds, without
 *         waiting for a rate (before, every CLI purge started at a quarter and held itself back
 *         for nobody), and after the load stops the run is at full speed within about a second.
 *     The first keeps out other databases and the janitor's replicas' pg-boss bookkeeping, the
 *     second the counter's lag. Once nobody writes, the scale is 1 at once: nobody is left to protect.
 *   - Control (AIMD, like TCP's congestion window): a probe while the janitor works, at most every
 *     PROBE_INTERVAL_MS whatever the number of lanes, above factor x baseline (and baseline +
 *     MIN_EXCESS_MS) halves the scale, down to its floor (JANITOR_LATENCY_GUARD_MIN_SPEED, MIN_SCALE
 *     by default), and pauses every lane for SETTLE_MS (at the floor, at most every
 *     FLOOR_HOLD_INTERVAL_MS); a probe below it adds SCALE_STEP, up to 1. A run that starts with the auth service writing starts
 *     at START_SCALE_WITH_FOREGROUND. The scale sizes the batches (rows x scale) and the duty
 *     cycle (a lane sleeps batch x (1 - scale) / scale after each batch): at 1 the guard costs
 *     nothing but its probes, which run on a connection of their own while the batches go on.
 *
 * Everything here but LatencyGuard's use of its injected probe and sleep is pure, and tested without
 * a database on a fake clock (test/tasks/latency-guard.test.ts); the probe itself, its connection
 * and its errors: tasks/latency-probe.ts.
 */
import { abortableSleep } from './throttle.ts';

/** Probes before the first batch; their median is the first baseline (one slow probe cannot move a median of five). */
export const BASELINE_PROBES = 5;

/**
 * At most one probe this often while the janitor works: about 5 tiny commits a second, next to the
 * hundreds of the auth service it protects; and, at 200 ms, a reaction well within the second.
 */
export const PROBE_INTERVAL_MS = 200;

/**
 * A hold lasts this long, then the calm probe. The WAL writer flushes the asynchronous commits' WAL
 * every wal_writer_delay (200 ms by default), so after 250 ms without a batch no WAL of ours is
 * waiting to be flushed, and the probe measures the others alone.
 */
export const SETTLE_MS = 250;

/**
 * A probe must also exceed the baseline by this much to count: on an idle server a commit takes a
 * fraction of a millisecond, and a factor of that is noise (a context switch, a timer tick). Small,
 * because the write counter already keeps the guard out of a 3 a.m. purge: at 1 ms, with the
 * refreshes' commits at 1.4 ms, the floor set the threshold at 1.7x instead of 1.3x, and the
 * refreshes' p99 rose 1.6-fold (measured, docs/performance.md).
 */
export const MIN_EXCESS_MS = 0.25;

/** The slowest the guard makes a run: 1/16 of the batch (5000 rows: 312) and of the time (a 6 % duty cycle). */
export const MIN_SCALE = 1 / 16;

/**
 * Additive increase: from MIN_SCALE back to full speed in sixteen good probes (about three
 * seconds). At 1/8 (under two seconds) the climbs back to full-size batches set the refreshes' p99.
 */
export const SCALE_STEP = 1 / 16;

/**
 * Where the scale starts when the auth service is writing at the start of a run: a quarter (1250
 * rows, a 25 % duty cycle, the throttled scenario's shape), so the first batches, before the first
 * probe answers, do not hit it at full size; good probes take it up from there.
 */
export const START_SCALE_WITH_FOREGROUND = 1 / 4;

/**
 * At the floor, a hot probe holds at most this often: a hold (SETTLE_MS) every two seconds costs an
 * eighth of the time, and keeps the calm probes that let the baseline follow a load that raises
 * every commit. More often, the holds and not the floor set the speed.
 */
export const FLOOR_HOLD_INTERVAL_MS = 2000;

/** How far a calm probe moves the baseline; each moves it at most twice or half its value, so one spike cannot poison it. */
export const BASELINE_WEIGHT = 0.5;

/**
 * The auth service counts as there at this many session writes a second or more: one refresh a
 * second already makes a p99 over a minute; below that, a few sessions a minute may wait a few
 * milliseconds more while a backlog drains at full speed.
 */
export const MIN_FOREGROUND_WRITES_PER_SECOND = 1;

/**
 * A write rate is judged over at least this span: each backend reports its counts at most once a
 * second (PostgreSQL 15 and later; every 500 ms to the collector before), so a shorter span can
 * show none under load. Also how often the guard reads the counter during a run.
 */
export const ACTIVITY_SPAN_MS = 1500;

/**
 * Whether anyone writes, as the server's next transaction id tells: every writing transaction of
 * every database takes one when it first writes, and the figure moves at once, where the write
 * counter lags by a second or more. Over this window: after the load stops, a run is back at full
 * speed within about a second and a probe interval (the counter alone took 2.5-4 s).
 */
export const XID_SPAN_MS = 1000;

/**
 * Others' writes from readings of the next transaction id (before and after a run's baseline probes,
 * at each probe, and whenever the worker primes it): the ids taken between the first reading of the
 * window (the newest at or before XID_SPAN_MS ago, else the oldest kept) and the last, less the
 * janitor's own (`own`: every guard of the pool counts its probes and its batches that deleted
 * rows into it, so a purge does not take the same process's reaper or extra-table purges for the
 * auth service). Someone writes when those are more than `tolerance` (a lane's batch in flight has
 * taken its id and not yet been counted: one a lane) and at least MIN_FOREGROUND_WRITES_PER_SECOND
 * over the window's span (a window reaching back to the last run minutes ago holds the janitor's
 * replicas' pg-boss bookkeeping, a few ids a minute). One per pool, kept between runs: a process's
 * first run has only its own two readings, milliseconds apart. Null: fewer than two readings.
 */
export class XidWindow {
  /** The janitor's own transaction ids on this pool so far. */
  own = 0;
  #readings: Array<{ readonly at: number; readonly next: number; readonly own: number }> = [];

  /** A reading at `at` of the server's next transaction id (null: unreadable, and the window starts over). */
  observe(at: number, next: number | null): void {
    if (next === null || !Number.isFinite(next)) {
      this.#readings = [];
      return;
    }
    this.#readings.push({ at, next, own: this.own });
    while (this.#readings.length > 2 && (this.#readings[1]?.at ?? at) <= at - XID_SPAN_MS) this.#readings.shift();
  }

  /** Whether others write, beyond `tolerance` ids; null: unknown. */
  present(tolerance: number): boolean | null {
    const first = this.#readings[0];
    const last = this.#readings.at(-1);
    if (first === undefined || last === undefined || first === last) return null;
    const others = last.next - first.next - (last.own - first.own);
    const seconds = Math.max(last.at - first.at, 1) / 1000;
    return others > tolerance && others / seconds >= MIN_FOREGROUND_WRITES_PER_SECOND;
  }
}

/**
 * Whether the auth service is writing, from readings of its cumulative write counter: one per pool,
 * kept between runs. Unknown (no reading yet, or the counter unreadable) counts as present.
 */
export class ActivityTracker {
  #last: { readonly at: number; readonly writes: number } | null = null;
  #present = true;

  get present(): boolean {
    return this.#present;
  }

  /** The milliseconds since the last reading that counted, or +Infinity. */
  sinceLast(now: number): number {
    return this.#last === null ? Number.POSITIVE_INFINITY : now - this.#last.at;
  }

  /** A reading of the counter at `now`; null: unknown. Readings closer than ACTIVITY_SPAN_MS to the last one are ignored. */
  observe(now: number, writes: number | null): void {
    if (writes === null || !Number.isFinite(writes)) {
      this.#last = null;
      this.#present = true;
      return;
    }
    const last = this.#last;
    if (last !== null && now - last.at < ACTIVITY_SPAN_MS) return;
    // A counter that went down was reset (pg_stat_reset): unknown until the next reading.
    this.#present = last === null || writes < last.writes || (writes - last.writes) / ((now - last.at) / 1000) >= MIN_FOREGROUND_WRITES_PER_SECOND;
    this.#last = { at: now, writes };
  }
}

export interface LatencyGuardSettings {
  /** Hold back while a probe takes more than factor x baseline. */
  readonly factor: number;
  /** The lowest scale (JANITOR_LATENCY_GUARD_MIN_SPEED): MIN_SCALE to 1, MIN_SCALE by default. */
  readonly minScale?: number;
}

export function median(values: readonly number[]): number | null {
  const finite = values.filter((v) => Number.isFinite(v) && v >= 0).sort((a, b) => a - b);
  if (finite.length === 0) return null;
  const mid = Math.floor(finite.length / 2);
  return finite.length % 2 === 1 ? (finite[mid] ?? null) : ((finite[mid - 1] ?? 0) + (finite[mid] ?? 0)) / 2;
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));

/** The guard's state and decisions, without I/O or clock. */
export class LatencyPolicy {
  readonly #factor: number;
  readonly #minScale: number;
  #baselineMs: number;
  #scale = 1;

  constructor(settings: LatencyGuardSettings, baselineMs: number, scale = 1) {
    this.#factor = settings.factor;
    this.#minScale = clamp(settings.minScale ?? MIN_SCALE, MIN_SCALE, 1);
    this.#baselineMs = baselineMs;
    this.#scale = clamp(scale, this.#minScale, 1);
  }

  get baselineMs(): number {
    return this.#baselineMs;
  }

  /** A probe slower than this holds the janitor back. */
  get thresholdMs(): number {
    return Math.max(this.#factor * this.#baselineMs, this.#baselineMs + MIN_EXCESS_MS);
  }

  /** 1: full speed; down to the settings' minScale. */
  get scale(): number {
    return this.#scale;
  }

  /** Whether the scale is at its floor (a hot probe can shrink it no further). */
  get atFloor(): boolean {
    return this.#scale <= this.#minScale;
  }

  /**
   * A probe taken while the janitor worked: true when it slowed the commits down too much (hold
   * back). foreground false: nobody writes, so nobody is slowed down: never hot, and full speed at
   * once (climbing back a step a probe, a run of a few seconds spent its life recovering for nobody).
   */
  busy(latencyMs: number, foreground = true): boolean {
    if (!foreground) {
      this.#scale = 1;
      return false;
    }
    if (!Number.isFinite(latencyMs)) return false;
    const hot = latencyMs > this.thresholdMs;
    this.#scale = hot ? Math.max(this.#minScale, this.#scale / 2) : Math.min(1, this.#scale + SCALE_STEP);
    return hot;
  }

  /** Full speed now (the freshness floor, tasks/freshness.ts): the next hot probe halves the scale from 1. */
  release(): void {
    this.#scale = 1;
  }

  /** A probe taken after the janitor paused SETTLE_MS: what the others' commits cost without it. */
  calm(latencyMs: number): void {
    if (!Number.isFinite(latencyMs) || latencyMs < 0) return;
    const b = this.#baselineMs;
    // A baseline of 0 (a clock too coarse) could never move by a factor: it moves to the sample.
    const sample = b > 0 ? clamp(latencyMs, b / 2, b * 2) : latencyMs;
    this.#baselineMs = b + BASELINE_WEIGHT * (sample - b);
  }

  /** The rows of a batch that would take `rows` without the guard: scaled down, never below `min` nor above `rows`. */
  batchRows(rows: number, min: number): number {
    if (this.#scale >= 1) return rows;
    return Math.min(rows, Math.max(min, Math.round(rows * this.#scale)));
  }

  /** What a lane sleeps after a batch of batchMs, so that batches fill `scale` of its time. */
  sleepAfterMs(batchMs: number): number {
    if (this.#scale >= 1 || batchMs <= 0) return 0;
    return (batchMs * (1 - this.#scale)) / this.#scale;
  }
}

export type LatencyGuardEvent =
  { readonly kind: 'baseline'; readonly baselineMs: number; readonly samplesMs: readonly number[] } | { readonly kind: 'unavailable'; readonly error: unknown };

export interface LatencyGuardDeps {
  /** One probe: the commit's milliseconds. Rejects when the probe cannot run (the guard then stays off for the run). */
  readonly probe: () => Promise<number>;
  /** Resolves after ms, or early (false) when signal aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<boolean>;
  readonly now?: () => number;
  readonly probeIntervalMs?: number;
  /** A lane waited ms because of the guard (a duty-cycle sleep or a hold). */
  readonly onHeldBack?: (ms: number, lane: number) => void;
  readonly onEvent?: (event: LatencyGuardEvent) => void;
  /** Whether the auth service writes: the tracker (kept between runs) and its counter; without them, always. */
  readonly activity?: {
    readonly tracker: ActivityTracker;
    readonly read: () => Promise<number | null>;
    /**
     * Whether anyone writes now: the pool's window (kept between runs) and the next transaction id
     * the server will assign (null: unreadable). Without them, unknown (yes).
     */
    readonly transactionIds?: { readonly window: XidWindow; readonly readNext: () => Promise<number | null> };
  };
  /** Called at the end of finish(), once no probe or hold is left (the I/O side gives its connection back). */
  readonly onFinish?: () => Promise<void>;
}

export interface LatencyGuardStats {
  /** null: the guard could not learn a baseline and stayed off. */
  readonly baselineMs: number | null;
  readonly probes: number;
  readonly holds: number;
  readonly scale: number;
  /** Whether the auth service was writing, as last read. */
  readonly foreground: boolean;
}

/**
 * One run's guard, shared by its lanes: await start() once, then beforeBatch() before each batch,
 * size each batch with batchRows(), report each with afterBatch(). `signal` aborts when the run must
 * stop (shutdown, the time budget): every sleep and hold ends early then.
 */
export class LatencyGuard {
  readonly #settings: LatencyGuardSettings;
  readonly #probe: () => Promise<number>;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<boolean>;
  readonly #now: () => number;
  readonly #probeIntervalMs: number;
  readonly #onHeldBack: (ms: number, lane: number) => void;
  readonly #onEvent: (event: LatencyGuardEvent) => void;
  readonly #signal: AbortSignal;
  /** Ends a hold at once when the run finishes (its lanes are done: nothing is left to hold back). */
  readonly #finishing = new AbortController();
  /** The run's signal or the end of the run: what ends the guard's sleeps. */
  readonly #wake: AbortSignal;
  readonly #activity: LatencyGuardDeps['activity'];
  readonly #onFinish: () => Promise<void>;
  readonly #owed = new Map<number, number>();
  readonly #xids: XidWindow;
  /** The lanes that have asked for a batch: each may have one in flight, its id taken and not yet counted. */
  readonly #lanes = new Set<number>();
  #policy: LatencyPolicy | null = null;
  #probedAt = Number.NEGATIVE_INFINITY;
  #probing: Promise<void> | null = null;
  /** A reading of who writes while the guard stands aside (#watchWriters). */
  #watching: Promise<void> | null = null;
  #finished = false;
  #hold: Promise<void> | null = null;
  #probes = 0;
  #holds = 0;
  #lastHoldAt = Number.NEGATIVE_INFINITY;
  #standingAside = false;

  constructor(settings: LatencyGuardSettings, deps: LatencyGuardDeps, signal: AbortSignal) {
    this.#settings = settings;
    this.#probe = deps.probe;
    this.#sleep = deps.sleep ?? abortableSleep;
    this.#now = deps.now ?? (() => performance.now());
    this.#probeIntervalMs = deps.probeIntervalMs ?? PROBE_INTERVAL_MS;
    this.#onHeldBack = deps.onHeldBack ?? (() => {});
    this.#onEvent = deps.onEvent ?? (() => {});
    this.#signal = signal;
    this.#wake = AbortSignal.any([signal, this.#finishing.signal]);
    this.#activity = deps.activity;
    this.#xids = deps.activity?.transactionIds?.window ?? new XidWindow();
    this.#onFinish = deps.onFinish ?? (() => Promise.resolve());
  }

  get stats(): LatencyGuardStats {
    return {
      baselineMs: this.#policy?.baselineMs ?? null,
      probes: this.#probes,
      holds: this.#holds,
      scale: this.#policy?.scale ?? 1,
      foreground: this.#foreground(),
    };
  }

  /** Learns the baseline before the first batch. A probe that fails leaves the guard off for the run. */
  async start(): Promise<void> {
    await this.#readWriters();
    const samples: number[] = [];
    for (let i = 0; i < BASELINE_PROBES && !this.#signal.aborted; i++) {
      const latency = await this.#measure();
      if (latency === null) return;
      samples.push(latency);
    }
    // Whether others wrote during the probes: a process's first run knows at once, without
    // waiting ACTIVITY_SPAN_MS for the counter's first rate.
    await this.#readXids();
    const baseline = median(samples);
    if (baseline === null) return;
    // The first batch starts the first probe: it measures what that batch costs the others.
    this.#policy = new LatencyPolicy(this.#settings, baseline, this.#foreground() ? START_SCALE_WITH_FOREGROUND : 1);
    this.#onEvent({ kind: 'baseline', baselineMs: baseline, samplesMs: samples });
  }

  /**
   * Whether the guard has its baseline and nobody on the server writes, as the transaction ids tell
   * (XidWindow): the purge's larger batches (BatchTask.idleMaxSize). The ids alone, not the write
   * counter with them: a batch's WAL delays every commit of the server, the auth service's or not,
   * and the counter lags a writer's arrival by a second or two (a first rate of 0 let full-size
   * batches run beside a writer that had just come).
   */
  get nobodyWrites(): boolean {
    return this.#policy !== null && this.#xids.present(this.#lanes.size) === false;
  }

  /**
   * Whether the guard stands aside (tasks/freshness.ts: the purge is past its freshness objective):
   * full speed at once, and no probe runs, holds it back or shrinks it until it guards again (it
   * still reads who writes: #watchWriters).
   */
  standAside(aside: boolean): void {
    if (aside && !this.#standingAside) {
      this.#policy?.release();
      this.#owed.clear();
    }
    this.#standingAside = aside;
  }

  /** The rows lane's next batch may take, where it would take `rows` without the guard. */
  batchRows(rows: number, min: number): number {
    return this.#policy === null ? rows : this.#policy.batchRows(rows, min);
  }

  /** A batch of lane took batchMs (and a transaction id when it deleted rows): the duty-cycle sleep it owes before its next one. */
  afterBatch(lane: number, batchMs: number, deletedRows = false): void {
    if (deletedRows) this.#xids.own += 1;
    if (this.#policy === null) return;
    this.#owed.set(lane, (this.#owed.get(lane) ?? 0) + this.#policy.sleepAfterMs(batchMs));
  }

  /** Waits as the guard requires before lane's next batch. Returns false if the run's signal aborted meanwhile. */
  async beforeBatch(lane: number): Promise<boolean> {
    this.#lanes.add(lane);
    const policy = this.#policy;
    // Standing aside (the freshness floor): no probe to start or wait for, no hold. A probe past
    // the threshold still held every batch until it ended (PostgreSQL 15 beside 500 refreshes/s:
    // the floor ran at 0.74 of the unguarded purge).
    if (policy === null) return !this.#signal.aborted;
    if (this.#standingAside) {
      this.#watchWriters();
      return !this.#signal.aborted;
    }
    const owed = this.#owed.get(lane) ?? 0;
    this.#owed.set(lane, 0);
    if (owed > 0) {
      const started = this.#now();
      const completed = await this.#sleep(owed, this.#wake);
      this.#onHeldBack(this.#now() - started, lane);
      if (!completed) return false;
    }
    if (this.#probing === null && this.#hold === null && this.#now() - this.#probedAt >= this.#probeIntervalMs) {
      // The batches go on while the probe runs (on a connection of its own): it measures what a
      // commit feels while the janitor works. Only a hot probe stops them, at their next batch.
      this.#probedAt = this.#now();
      this.#probing = this.#check(policy).finally(() => {
        this.#probing = null;
      });
    }
    const started = this.#now();
    // A probe still running after the threshold is hot already, whatever it ends at: no batch
    // starts before it ends (a commit stuck behind a flush, a held lock: the next batch would add to it).
    const probing = this.#probing;
    const waitForProbe = probing !== null && started - this.#probedAt > policy.thresholdMs;
    if (waitForProbe) await probing;
    const hold = this.#hold;
    if (hold !== null) await hold;
    // Only a wait counts: the microseconds of a beforeBatch that awaited nothing are no hold.
    if (waitForProbe || hold !== null) this.#onHeldBack(this.#now() - started, lane);
    return !this.#signal.aborted;
  }

  /**
   * Standing aside, the guard probes no commit, but still reads who writes (the transaction ids and
   * the write counter, at most every probe interval, never waited for): the batches' ceiling
   * (nobodyWrites) follows the auth service arriving or leaving during a long catch-up.
   */
  #watchWriters(): void {
    if (this.#watching !== null || this.#now() - this.#probedAt < this.#probeIntervalMs) return;
    this.#probedAt = this.#now();
    this.#watching = this.#readWriters().finally(() => {
      this.#watching = null;
    });
  }

  /** After the last batch: ends a hold at once, waits for a probe in flight (milliseconds), starts none. */
  async finish(): Promise<void> {
    this.#finished = true;
    this.#finishing.abort();
    await this.#watching;
    await this.#probing;
    await this.#hold;
    await this.#onFinish();
  }

  async #check(policy: LatencyPolicy): Promise<void> {
    const latency = await this.#measure();
    if (latency === null || this.#finished) return;
    await this.#readWriters();
    const atFloor = policy.atFloor;
    // Standing aside is as if nobody wrote: never hot, full speed.
    if (!policy.busy(latency, this.#foreground() && !this.#standingAside)) return;
    // At its floor the guard has nothing more to give: a hold there would take the run below
    // JANITOR_LATENCY_GUARD_MIN_SPEED (measured: with holds every probe, a floor of 0.5 drained at
    // a tenth of full speed). It still holds now and then, for the calm probe that keeps the
    // baseline in step with the hour.
    if (atFloor && this.#now() - this.#lastHoldAt < FLOOR_HOLD_INTERVAL_MS) return;
    this.#lastHoldAt = this.#now();
    this.#holds += 1;
    this.#hold = this.#settle(policy).finally(() => {
      this.#hold = null;
      this.#probedAt = this.#now();
    });
  }

  /** Every lane pauses SETTLE_MS; then the calm probe moves the baseline. */
  async #settle(policy: LatencyPolicy): Promise<void> {
    if (!(await this.#sleep(SETTLE_MS, this.#wake)) || this.#finished) return;
    const latency = await this.#measure();
    if (latency !== null) policy.calm(latency);
  }

  /**
   * Someone to protect: the auth service writes to the table (the counter, kept between runs; it
   * also keeps out other databases and the pg-boss bookkeeping of the janitor's replicas) and
   * someone writes now (the transaction ids: at once, where the counter lags). Unknown counts as yes.
   */
  #foreground(): boolean {
    return (this.#activity?.tracker.present ?? true) && (this.#xids.present(this.#lanes.size) ?? true);
  }

  /** Who writes: the server's next transaction id, then the write counter (at most once per ACTIVITY_SPAN_MS). */
  async #readWriters(): Promise<void> {
    await this.#readXids();
    await this.#readActivity();
  }

  /** Reads the server's next transaction id into the window. A failed read is unknown. */
  async #readXids(): Promise<void> {
    const ids = this.#activity?.transactionIds;
    if (ids === undefined) return;
    const next = await ids.readNext().catch(() => null);
    this.#xids.observe(this.#now(), next);
  }

  /** Reads the auth service's write counter into the tracker, at most once per ACTIVITY_SPAN_MS. A failed read is unknown. */
  async #readActivity(): Promise<void> {
    const activity = this.#activity;
    if (activity === undefined || activity.tracker.sinceLast(this.#now()) < ACTIVITY_SPAN_MS) return;
    const writes = await activity.read().catch(() => null);
    activity.tracker.observe(this.#now(), writes);
  }

  /** One probe's milliseconds, or null (and the guard off for the run) when it failed. */
  async #measure(): Promise<number | null> {
    this.#xids.own += 1;
    try {
      const latency = await this.#probe();
      this.#probes += 1;
      return latency;
    } catch (error) {
      this.#onEvent({ kind: 'unavailable', error });
      this.#policy = null;
      this.#owed.clear();
      return null;
    }
  }
}
