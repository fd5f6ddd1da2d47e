/**
 * One run's account of the time its batches waited, and why (docs/performance.md, "Latency guard"):
 * each wait goes to session_janitor_held_back_seconds_total{task, reason} at once (so a long run
 * shows on the dashboard while it runs), and the run's totals go to its completion log line
 * (consumers/scheduled.ts) and the CLI's summary.
 *
 * A batch counts as held back when something made it wait before it started, or the latency guard
 * made it smaller. Waits of several lanes at once add up (seconds of lane time, not wall time).
 */
import type { HeldBackReason, Metrics } from '../metrics.ts';
import type { ScheduledTaskName } from '../queues.ts';

export interface HeldBackSummary {
  /** Batches that waited, or ran smaller, because of a brake. */
  readonly heldBackBatches: number;
  /** Seconds waited by reason (only reasons that held the run back), rounded to the millisecond. */
  readonly heldBackSeconds: Partial<Record<HeldBackReason, number>>;
}

export class HeldBack {
  readonly #metrics: Metrics;
  readonly #task: ScheduledTaskName;
  readonly #ms = new Map<HeldBackReason, number>();
  #batches = 0;
  /** Lanes that waited since their last batch. */
  readonly #waited = new Set<number>();

  constructor(metrics: Metrics, task: ScheduledTaskName) {
    this.#metrics = metrics;
    this.#task = task;
  }

  /** Lane waited ms for reason (a throttle pause, which holds every lane, counts once: wall time). */
  wait(reason: HeldBackReason, ms: number, lane: number): void {
    if (!(ms > 0)) return;
    this.#ms.set(reason, (this.#ms.get(reason) ?? 0) + ms);
    this.#metrics.heldBack.inc({ task: this.#task, reason }, ms / 1000);
    this.#waited.add(lane);
  }

  /** Lane starts a batch; shrunk: the latency guard made it smaller than it would have been. */
  batch(lane: number, shrunk: boolean): void {
    if (shrunk || this.#waited.has(lane)) this.#batches += 1;
    this.#waited.delete(lane);
  }

  get summary(): HeldBackSummary {
    const heldBackSeconds: Partial<Record<HeldBackReason, number>> = {};
    for (const [reason, ms] of this.#ms) heldBackSeconds[reason] = Math.round(ms) / 1000;
    return { heldBackBatches: this.#batches, heldBackSeconds };
  }
}
