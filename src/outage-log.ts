/**
 * What the logs say of a database outage: a state change, not every retry. While the database is
 * away each pg-boss loop, the readiness ping and the pool fail several times a second, per pod; one
 * error line each, with its stack, buries every other line while the alerts (DatabaseUnusable)
 * already say it. So: one error line when it goes (with the first error), a warning every
 * STILL_DOWN_EVERY_MS while it lasts (how long, how many failures), one info line when it is back.
 * Every failure is still counted in session_janitor_errors_total by its caller.
 */
import type { Logger } from './logger.ts';
import { safeErrorMessage } from './db/errors.ts';

export const STILL_DOWN_EVERY_MS = 5 * 60_000;

export interface OutageLogOptions {
  /** How often a lasting outage is reported again. */
  readonly repeatMs?: number;
  readonly now?: () => number;
}

interface Down {
  readonly since: number;
  failures: number;
  reportedAt: number;
}

export class OutageLog {
  readonly #log: Logger;
  readonly #repeatMs: number;
  readonly #now: () => number;
  #down: Down | null = null;

  constructor(log: Logger, options: OutageLogOptions = {}) {
    this.#log = log;
    this.#repeatMs = options.repeatMs ?? STILL_DOWN_EVERY_MS;
    this.#now = options.now ?? Date.now;
  }

  get isDown(): boolean {
    return this.#down !== null;
  }

  /** The database could not be reached (`source`: who found out, e.g. pg-boss, ping, pool). */
  failed(error: unknown, source: string): void {
    const now = this.#now();
    const down = this.#down;
    if (down === null) {
      this.#down = { since: now, failures: 1, reportedAt: now };
      const every = Math.round(this.#repeatMs / 60_000);
      this.#log.error(
        { err: error, source },
        `database unreachable: ${safeErrorMessage(error)}; further failures are counted, not logged (every ${every} min a summary, and a line when it is back)`,
      );
      return;
    }
    down.failures += 1;
    if (now - down.reportedAt >= this.#repeatMs) {
      down.reportedAt = now;
      const downSeconds = Math.round((now - down.since) / 1000);
      this.#log.warn(
        { failures: down.failures, downSeconds, source, lastError: safeErrorMessage(error) },
        `database still unreachable after ${downSeconds} s: ${down.failures} failures so far`,
      );
    }
  }

  /** The database answered: ends an outage, if there was one. */
  recovered(): void {
    const down = this.#down;
    if (down === null) return;
    this.#down = null;
    const downSeconds = Math.round((this.#now() - down.since) / 1000);
    this.#log.info({ failures: down.failures, downSeconds }, `database reachable again after ${downSeconds} s (${down.failures} failures while it was away)`);
  }
}
