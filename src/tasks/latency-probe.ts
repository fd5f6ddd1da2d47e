/**
 * The latency guard's I/O (the decisions: tasks/latency-guard.ts): its probe on a pooled connection,
 * and one run's guard wired to the configuration, the log and session_janitor_held_back_seconds_total.
 *
 * The probe runs on a connection of the pool, never on a lane's: the lanes commit asynchronously
 * (JANITOR_PURGE_ASYNC_COMMIT), and the probe must commit as the auth service does, with the
 * server's synchronous_commit (whatever the server, the database or the role sets: the worker's
 * pool never changes it). Only the statement is timed, not the wait for a free connection: a busy
 * pool is not a slow commit. The pools have a connection for it (worker.ts, commands/common.ts).
 */
import type pg from 'pg';
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { qualified } from '../db/sql/identifiers.ts';
import { latencyProbe, sessionWrites } from '../db/sql/latency-guard.ts';
import type { ScheduledTaskName } from '../queues.ts';
import type { TaskContext } from './context.ts';
import type { HeldBack } from './held-back.ts';
import { ActivityTracker, LatencyGuard, type LatencyGuardEvent } from './latency-guard.ts';

export type LatencyProbe = () => Promise<number>;

/** One probe: the milliseconds of the tiny synchronous write (db/sql/latency-guard.ts). */
export function commitLatencyProbe(pool: pg.Pool): LatencyProbe {
  return async () => {
    const client = await pool.connect();
    // pg-pool drops its own 'error' listener while a client is checked out (tasks/connection.ts).
    const onError = () => {};
    client.on('error', onError);
    let broken: Error | undefined;
    const started = performance.now();
    try {
      await client.query(latencyProbe);
      return performance.now() - started;
    } catch (error) {
      // A probe that ran into lock_timeout or statement_timeout took at least that long: a commit
      // is that slow now, or something holds the probe's row; either way, hold back.
      const state = sqlState(error);
      if (state === SQLSTATE.queryCanceled || state === SQLSTATE.lockNotAvailable) return performance.now() - started;
      broken = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      if (broken === undefined) client.off('error', onError);
      client.release(broken);
    }
  };
}

/** The auth service's writes to the sessions table so far (db/sql/latency-guard.ts), or null. */
export function sessionWriteCounter({ pool, config }: TaskContext): () => Promise<number | null> {
  return async () => {
    const { rows } = await pool.query<{ writes: number | null }>({ ...sessionWrites, values: [qualified(config.sessionTable)] });
    return rows[0]?.writes ?? null;
  };
}

/** One tracker per pool (one per worker process): a run starts with what the runs before it read. */
const trackers = new WeakMap<pg.Pool, ActivityTracker>();

export function activityTracker(pool: pg.Pool): ActivityTracker {
  let tracker = trackers.get(pool);
  if (tracker === undefined) {
    tracker = new ActivityTracker();
    trackers.set(pool, tracker);
  }
  return tracker;
}

/**
 * Takes a reading of the auth service's write counter now (a worker about to run, the benchmark's
 * warm child): the next run then knows whether anyone writes, from ACTIVITY_SPAN_MS on.
 */
export async function primeActivity(ctx: TaskContext): Promise<void> {
  activityTracker(ctx.pool).observe(performance.now(), await sessionWriteCounter(ctx)().catch(() => null));
}

/** The run's latency guard, or null with JANITOR_LATENCY_GUARD=off. Call start() before the first batch. */
export function createLatencyGuard(
  ctx: TaskContext,
  task: ScheduledTaskName,
  heldBack: HeldBack,
  signal: AbortSignal,
  probe: LatencyProbe = commitLatencyProbe(ctx.pool),
  activity: { readonly tracker: ActivityTracker; readonly read: () => Promise<number | null> } = {
    tracker: activityTracker(ctx.pool),
    read: sessionWriteCounter(ctx),
  },
): LatencyGuard | null {
  const factor = ctx.config.latencyGuardFactor;
  if (factor === null) return null;
  return new LatencyGuard(
    { factor },
    {
      probe,
      activity,
      onHeldBack: (ms, lane) => heldBack.wait('latency', ms, lane),
      onEvent: (event) => logGuardEvent(ctx, task, event),
    },
    signal,
  );
}

/** Warned about once per process: a role without the probe table's grants stays without them. */
let warnedUnavailable = false;

function logGuardEvent({ log }: TaskContext, task: ScheduledTaskName, event: LatencyGuardEvent): void {
  if (event.kind === 'baseline') {
    log.debug({ task, baselineMs: round(event.baselineMs), samplesMs: event.samplesMs.map(round) }, 'latency guard baseline');
    return;
  }
  const first = !warnedUnavailable;
  warnedUnavailable = true;
  (first ? log.warn.bind(log) : log.debug.bind(log))(
    { task, err: event.error },
    `${task}: the latency guard cannot probe (session_janitor.latency_probe missing or not writable? run \`session-janitor migrate\`): this run goes unguarded`,
  );
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
