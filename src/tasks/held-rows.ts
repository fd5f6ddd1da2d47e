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
 */
import { SQLSTATE, sqlState } from '../db/errors.ts';
import type { TaskContext } from './context.ts';

export const MAX_LOCK_TIMEOUTS = 16;

/** A primary-key value as node-pg returns it (a number for integer, a string for bigint). */
export type SessionId = number | string;

/** attempt(false); after a lock timeout attempt(true); after another, byIds(). */
export async function aroundHeldRows<T>(ctx: TaskContext, attempt: (exceptHeld: boolean) => Promise<T>, byIds: () => Promise<T>): Promise<T> {
  for (const exceptHeld of [false, true]) {
    try {
      return await attempt(exceptHeld);
    } catch (error) {
      if (!lockTimedOut(ctx, error)) throw error;
    }
  }
  return byIds();
}

/** Deletes `ids` (all of which timed out together) in halves with `remove`; returns the rows deleted. */
export async function deleteInHalves(ctx: TaskContext, ids: readonly SessionId[], remove: (ids: SessionId[]) => Promise<number>): Promise<number> {
  const halves = (part: readonly SessionId[]) => {
    const middle = Math.ceil(part.length / 2);
    // Last first: pop() takes the lower half next.
    return part.length < 2 ? [[...part]] : [part.slice(middle), part.slice(0, middle)];
  };
  const pending = halves(ids);
  let timeoutsLeft = MAX_LOCK_TIMEOUTS;
  let deleted = 0;
  let skipped = 0;
  for (let part = pending.pop(); part !== undefined; part = pending.pop()) {
    if (part.length === 0) continue;
    if (timeoutsLeft === 0) {
      skipped += part.length;
      continue;
    }
    try {
      deleted += await remove(part);
    } catch (error) {
      if (!lockTimedOut(ctx, error)) throw error;
      timeoutsLeft -= 1;
      if (part.length === 1) skipped += 1;
      else pending.push(...halves(part));
    }
  }
  if (skipped > 0) ctx.log.info({ skipped }, 'rows held by other transactions left for a later run');
  return deleted;
}

function lockTimedOut({ metrics }: TaskContext, error: unknown): boolean {
  if (sqlState(error) !== SQLSTATE.lockNotAvailable) return false;
  metrics.errors.inc({ kind: 'lock-timeout' });
  return true;
}
