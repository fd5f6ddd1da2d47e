/**
 * The clock check: the database's now() against this process's clock, at start and on each gauge
 * refresh. The purge's and the reaper's cutoffs come from the database's now(), so a database clock
 * that steps ahead (a year: every session "expired", every session "idle") would have them delete
 * valid sessions; the process's clock, set apart from it (the node's NTP), is the second opinion.
 * While the two differ by more than JANITOR_CLOCK_SKEW_TOLERANCE (60 s by default; NTP keeps a
 * healthy pair within milliseconds, and a minute is far inside any expiry or idle timeout), the
 * purge and the reaper hold: a run stops before its next batch with stoppedBy "clock-skew", and a
 * run that starts deletes nothing. The revocations do not hold: their instants come from the
 * producer, and the enqueue's skew rule (issuedBefore at most now() + 5 minutes) covers them.
 *
 * The difference is measured at the midpoint of the query's round trip, and only what exceeds the
 * tolerance by more than half the round trip counts: a slow answer is not a clock that jumped.
 */
import type pg from 'pg';
import { databaseNow } from '../db/sql/clock.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';

export class ClockCheck {
  readonly #toleranceSeconds: number | null;
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #now: () => number;
  #holding = false;

  /** now: this process's clock in milliseconds (a test sets another one). */
  constructor(toleranceSeconds: number | null, log: Logger, metrics: Metrics, now: () => number = Date.now) {
    this.#toleranceSeconds = toleranceSeconds;
    this.#log = log;
    this.#metrics = metrics;
    this.#now = now;
  }

  /** Whether the purge and the reaper hold now (as of the last measurement). */
  get holding(): boolean {
    return this.#holding;
  }

  /** Measures the difference (database minus process, seconds), exports it, and holds or releases. */
  async measure(db: pg.Pool | pg.ClientBase): Promise<number> {
    const before = this.#now();
    const { rows } = await db.query<{ now: number }>(databaseNow);
    const after = this.#now();
    const skewSeconds = (rows[0]?.now ?? Number.NaN) - (before + after) / 2000;
    const slack = (after - before) / 2000;
    const holding = this.#toleranceSeconds !== null && !(Math.abs(skewSeconds) - slack <= this.#toleranceSeconds);
    this.#metrics.clockSkew.set(Number.isFinite(skewSeconds) ? skewSeconds : 0);
    this.#metrics.clockSkewHold.set(holding ? 1 : 0);
    const fields = { skewSeconds: Math.round(skewSeconds * 1000) / 1000, toleranceSeconds: this.#toleranceSeconds };
    if (holding && !this.#holding)
      this.#log.error(
        fields,
        "the database's clock and this process's differ by more than JANITOR_CLOCK_SKEW_TOLERANCE: the purge and the reaper hold until they agree (revocations go on); see the runbook, SessionJanitorClockSkew",
      );
    else if (!holding && this.#holding) this.#log.warn(fields, "the database's clock and this process's agree again: the purge and the reaper resume");
    this.#holding = holding;
    return skewSeconds;
  }
}
