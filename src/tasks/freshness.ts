/**
 * The freshness floor (JANITOR_PURGE_FRESHNESS_OBJECTIVE): while the oldest row a purge has left has
 * waited longer than the objective past its expiry (and grace), the latency guard stands aside and
 * the purge goes at full speed. Beside a service that writes around the clock the guard could
 * otherwise hold a purge below the rate its table's expiries need, and the backlog would grow for
 * ever behind a polite janitor. The objective wins over the latency budget, visibly: the seconds
 * count in session_janitor_freshness_override_seconds_total and a log line says when it starts and
 * ends.
 *
 * The purge walks the expires_at index oldest first, so the override covers exactly the rows that
 * are overdue: each batch reports how long the oldest row its lane has left has waited (the batch's
 * bound, read by the database's clock), and once that is back within the objective the guard guards
 * again. With several lanes the run's oldest is the oldest of theirs (the slices not yet taken are
 * younger than every lane's).
 */

export interface FreshnessDeps {
  readonly now?: () => number;
  /** The override starts: the oldest row left has waited waitedSeconds. */
  readonly onStart?: (waitedSeconds: number) => void;
  /** The override ends, after overriddenMs: the oldest row left is back within the objective. */
  readonly onEnd?: (overriddenMs: number) => void;
  /** Milliseconds of override to count, as they pass (at each batch and at the end of the run). */
  readonly onOverride?: (ms: number) => void;
}

export class FreshnessFloor {
  readonly #objectiveSeconds: number;
  readonly #now: () => number;
  readonly #deps: FreshnessDeps;
  /** Per lane: seconds the oldest row it has left has waited past its expiry and grace. */
  readonly #waited = new Map<number, number>();
  /** When the override started (ms), or null. */
  #since: number | null = null;
  #countedUntil = 0;

  constructor(objectiveSeconds: number, deps: FreshnessDeps = {}) {
    this.#objectiveSeconds = objectiveSeconds;
    this.#now = deps.now ?? (() => performance.now());
    this.#deps = deps;
  }

  /** Whether the latency guard must stand aside now. */
  get overriding(): boolean {
    return this.#since !== null;
  }

  /**
   * A batch of lane left its oldest row waiting `waitedSeconds` (undefined: the batch could not
   * tell, the last reading stands; null: the lane has nothing left with an age, done or -infinity).
   */
  record(lane: number, waitedSeconds: number | null | undefined): void {
    if (waitedSeconds === undefined) return;
    if (waitedSeconds === null) this.#waited.delete(lane);
    else this.#waited.set(lane, waitedSeconds);
    const oldest = Math.max(Number.NEGATIVE_INFINITY, ...this.#waited.values());
    const now = this.#now();
    if (this.#since !== null) this.#count(now);
    if (oldest > this.#objectiveSeconds && this.#since === null) {
      this.#since = now;
      this.#countedUntil = now;
      this.#deps.onStart?.(oldest);
    } else if (oldest <= this.#objectiveSeconds && this.#since !== null) {
      const since = this.#since;
      this.#since = null;
      this.#deps.onEnd?.(now - since);
    }
  }

  /** The run ended: counts an override still in force. */
  finish(): void {
    if (this.#since !== null) this.#count(this.#now());
  }

  #count(now: number): void {
    const ms = now - this.#countedUntil;
    this.#countedUntil = now;
    if (ms <= 0) return;
    this.#deps.onOverride?.(ms);
  }
}
