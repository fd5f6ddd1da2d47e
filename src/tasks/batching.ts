/**
 * What every batched task shares, and nothing that does I/O: the run's budget (when to stop) and
 * the adaptive batch size (how many rows the next batch takes).
 */
import type { HeldBack } from './held-back.ts';

/** How a run stopped: the job output of docs/CONTRACT.md. */
export type StoppedBy = 'drained' | 'time-budget' | 'row-budget' | 'shutdown' | 'paused' | 'clock-skew' | 'blast-radius';

export interface RunOutput {
  deleted: number;
  batches: number;
  stoppedBy: StoppedBy;
}

export interface Progress {
  readonly deleted: number;
  readonly batches: number;
  readonly elapsedMs: number;
  /** 0..1 of the work known at the start, when the task can tell (the reaper's pass). */
  readonly fraction?: number;
  /** fraction when this run started (a reap resumes a pass part-way): the ETA counts from there. */
  readonly fractionAtStart?: number;
}

export interface RunOptions {
  /** Aborted on shutdown (or by pg-boss): the run stops between batches. */
  readonly signal?: AbortSignal;
  /** Count what would go; delete nothing. */
  readonly dryRun?: boolean;
  readonly onProgress?: (progress: Progress) => void;
  /** Called after every batch with its own figures (the benchmark's exact batch timings). */
  readonly onBatch?: (batch: BatchReport) => void;
  /** Where the run accounts for its waits (the latency guard, the throttle); one of its own when absent. */
  readonly heldBack?: HeldBack;
}

export interface BatchReport {
  readonly rows: number;
  /** The batch statement's round trip, lock-timeout retry included, throttle sleeps excluded. */
  readonly durationMs: number;
}

export class RunBudget {
  readonly #startedAt: number;
  readonly #maxMs: number;
  readonly #maxRows: number | null;
  readonly #signal: AbortSignal | undefined;
  readonly #now: () => number;

  constructor(maxRunSeconds: number, maxRows: number | null, signal?: AbortSignal, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#startedAt = now();
    this.#maxMs = maxRunSeconds * 1000;
    this.#maxRows = maxRows;
    this.#signal = signal;
  }

  get elapsedMs(): number {
    return this.#now() - this.#startedAt;
  }

  /** Why the run must stop before its next batch, or null to go on. */
  stopReason(rowsSoFar: number): Exclude<StoppedBy, 'drained'> | null {
    if (this.#signal?.aborted) return 'shutdown';
    if (this.#maxRows !== null && rowsSoFar >= this.#maxRows) return 'row-budget';
    if (this.elapsedMs >= this.#maxMs) return 'time-budget';
    return null;
  }

  /** Milliseconds left of the time budget (0 past it). */
  get msLeft(): number {
    return Math.max(0, this.#maxMs - this.elapsedMs);
  }

  /** Rows the next batch may take without overshooting the row budget. */
  rowsLeft(rowsSoFar: number): number {
    return this.#maxRows === null ? Number.POSITIVE_INFINITY : Math.max(0, this.#maxRows - rowsSoFar);
  }
}

/**
 * Batch size that tracks a target batch duration. After each batch it moves halfway towards the
 * size that would have taken exactly the target at the rate just seen, never more than doubling
 * or halving at once (one slow batch, a checkpoint say, should not collapse the size), within
 * [min, max]. A statement timeout halves it outright.
 *
 * Halfway steps: the rate per row is noisy from batch to batch (cache misses, WAL flushes, lock
 * waits); a full step would chase the noise, a smaller one would take tens of batches to settle.
 */
export class AdaptiveBatchSize {
  #size: number;
  readonly #min: number;
  readonly #max: number;
  /** The upper bound for now (capAt), within [min, max]. */
  #cap: number;
  readonly #targetMs: number;

  constructor(initial: number, min: number, max: number, targetMs: number) {
    this.#min = min;
    this.#max = max;
    this.#cap = max;
    this.#targetMs = targetMs;
    this.#size = clamp(initial, min, max);
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Bounds the size by `cap` (within [min, max]) until the next call: at once when it is above, and
   * as it grows. The purge's lower cap while the auth service writes (tasks/engine.ts, BatchTask).
   */
  capAt(cap: number): void {
    this.#cap = clamp(cap, this.#min, this.#max);
    this.#size = Math.min(this.#size, this.#cap);
  }

  /** A batch of `rows` rows took `durationMs`. Short batches (the tail of a range) teach nothing. */
  record(rows: number, durationMs: number): void {
    if (rows < this.#size / 2 || durationMs <= 0) return;
    const ideal = (rows * this.#targetMs) / durationMs;
    const next = this.#size + (ideal - this.#size) / 2;
    this.#size = clamp(Math.round(clamp(next, this.#size / 2, this.#size * 2)), this.#min, this.#cap);
  }

  /** The batch hit statement_timeout. */
  timedOut(): void {
    this.#size = clamp(Math.floor(this.#size / 2), this.#min, this.#cap);
  }

  get atMinimum(): boolean {
    return this.#size <= this.#min;
  }
}

const clamp = (value: number, min: number, max: number) => Math.min(max, Math.max(min, value));
