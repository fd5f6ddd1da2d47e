/**
 * The run never stalls on a row another transaction holds. A batch statement waits for a held row
 * at most lock_timeout (55P03); then, in this order:
 *
 * 1. the same statement leaving out the rows whose xmax is a transaction in progress
 *    (db/sql/held-rows.ts): one more statement, and enough for a plain refresh in flight;
 * 2. when that times out too (the row is held inside a savepoint, or by several lockers as a
 *    MultiXact: its xmax names no transaction of the snapshot), the batch's candidate ids, read
 *    without locks, are deleted by id with the condition re-checked, in halves: a half that times
 *    out is halved again, and a single id that times out is left for a later run.
 *
 * Why halves: without a row lock (which needs UPDATE: sql/roles.sql) nothing tells which row is
 * held but trying to delete it, and each try that meets a held row costs lock_timeout. With k held
 * rows among n ids, halving finds them with about k·log2(n) timed-out statements and 2·k·log2(n)
 * statements in all, where a statement per id would cost n round trips. A batch spends at most
 * MAX_LOCK_TIMEOUTS of them (16 × lock_timeout, 3.2 s by default, which isolates one held row among
 * the 20000 ids of the widest range), then leaves the ids it has not tried for a later run.
 *
 * And at most half of the run's time left (HeldRows): with a long lock_timeout (10 s) 16 of them
 * outlast a whole run, and a run whose first batch has many held rows would spend all its time
 * there, delete nothing and stop, run after run, while every row after that batch waited. With half,
 * the run goes on past the batch, and a later batch with held rows gets half of what is left then.
 */
import { SQLSTATE, sqlState } from '../db/errors.ts';
import type { TaskContext } from './context.ts';

export const MAX_LOCK_TIMEOUTS = 16;

/** A primary-key value as node-pg returns it (a number for integer, a string for bigint). */
export type SessionId = number | string;

/**
 * A lane's milliseconds spent in statements that ended at lock_timeout: waiting, not working. The
 * batch loops leave them out of the batch duration they give the adaptive size and the brakes, or
 * a batch that waited 18 lock timeouts would shrink the size and make the duty cycle (throttle,
 * latency guard) sleep in proportion, for WAL it never wrote.
 */
export interface LockWaits {
  ms: number;
}

/** attempt(false); after a lock timeout attempt(true); after another, byIds(). */
export async function aroundHeldRows<T>(
  ctx: TaskContext,
  attempt: (exceptHeld: boolean) => Promise<T>,
  byIds: () => Promise<T>,
  waits?: LockWaits,
): Promise<T> {
  for (const exceptHeld of [false, true]) {
    const started = performance.now();
    try {
      return await attempt(exceptHeld);
    } catch (error) {
      if (!lockTimedOut(ctx, error)) throw error;
      if (waits) waits.ms += performance.now() - started;
    }
  }
  return byIds();
}

/** A run's account of its held rows: how many lock timeouts the next fallback may spend, and the ids it left. */
export class HeldRows {
  readonly #msLeft: () => number;
  readonly #lockTimeoutMs: number;
  /** Ids left for a later run, untried or held, over the run. */
  left = 0;

  constructor(msLeft: () => number, lockTimeoutMs: number) {
    this.#msLeft = msLeft;
    this.#lockTimeoutMs = Math.max(1, lockTimeoutMs);
  }

  /** MAX_LOCK_TIMEOUTS, or fewer so that they take at most half the run's time left. */
  get timeoutsAllowed(): number {
    return Math.max(0, Math.min(MAX_LOCK_TIMEOUTS, Math.floor(this.#msLeft() / 2 / this.#lockTimeoutMs)));
  }
}

/**
 * Deletes `ids` (all of which timed out together) in halves with `remove`; returns the rows deleted.
 * `held`: the run's budget for it, and where the ids left are counted (MAX_LOCK_TIMEOUTS without).
 */
export async function deleteInHalves(
  ctx: TaskContext,
  ids: readonly SessionId[],
  remove: (ids: SessionId[]) => Promise<number>,
  held?: HeldRows,
  waits?: LockWaits,
): Promise<number> {
  const halves = (part: readonly SessionId[]) => {
    const middle = Math.ceil(part.length / 2);
    // Last first: pop() takes the lower half next.
    return part.length < 2 ? [[...part]] : [part.slice(middle), part.slice(0, middle)];
  };
  const pending = halves(ids);
  let timeoutsLeft = held?.timeoutsAllowed ?? MAX_LOCK_TIMEOUTS;
  let deleted = 0;
  let skipped = 0;
  for (let part = pending.pop(); part !== undefined; part = pending.pop()) {
    if (part.length === 0) continue;
    if (timeoutsLeft === 0) {
      skipped += part.length;
      continue;
    }
    const started = performance.now();
    try {
      deleted += await remove(part);
    } catch (error) {
      if (!lockTimedOut(ctx, error)) throw error;
      if (waits) waits.ms += performance.now() - started;
      timeoutsLeft -= 1;
      if (part.length === 1) skipped += 1;
      else pending.push(...halves(part));
    }
  }
  if (held) held.left += skipped;
  if (skipped > 0) ctx.log.info({ skipped }, 'rows held by other transactions left for a later run');
  return deleted;
}

function lockTimedOut({ metrics }: TaskContext, error: unknown): boolean {
  if (sqlState(error) !== SQLSTATE.lockNotAvailable) return false;
  metrics.errors.inc({ kind: 'lock-timeout' });
  return true;
}
