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
import { latencyProbe, nextTransactionId, sessionWrites } from '../db/sql/latency-guard.ts';
import { tableLabel, type QualifiedName } from '../config.ts';
import { scheduledTask, type ScheduledTaskName } from '../queues.ts';
import { borrowed } from './connection.ts';
import type { TaskContext } from './context.ts';
import type { HeldBack } from './held-back.ts';
import { ActivityTracker, LatencyGuard, XidWindow, type LatencyGuardEvent } from './latency-guard.ts';
import { commandLine } from '../command-line.ts';

export type LatencyProbe = () => Promise<number>;

/** Where the probe and the write counter run: a connection lent for each statement. */
export interface ProbeConnection {
  use<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
}

/**
 * One run's connection for its guard: taken at the guard's first statement (start(), before any lane
 * takes its own) and kept until the run ends (release()). Taken from the pool for each probe instead,
 * it deadlocked a full pool: lanes that hold their connections wait for the guard, whose probe waits
 * for a connection, until the pool's connect timeout fails a lane (the matrix's property test, two
 * purges of 3 lanes on one pool of 5: "timeout exceeded when trying to connect"). A connection that
 * fails (other than the probe's timeouts, which it handles) is discarded; the next use takes another.
 */
export class RunProbeConnection implements ProbeConnection {
  readonly #pool: pg.Pool;
  #client: Promise<pg.PoolClient> | null = null;
  // pg-pool drops its own 'error' listener while a client is checked out (tasks/connection.ts).
  readonly #onError = () => {};

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async use<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.#client ??= this.#pool.connect().then((client) => client.on('error', this.#onError));
    const pending = this.#client;
    const client = await pending.catch((error: unknown) => {
      if (this.#client === pending) this.#client = null;
      throw error;
    });
    try {
      return await fn(client);
    } catch (error) {
      // The probe's row was locked (NOWAIT): the connection itself is sound.
      if (sqlState(error) === SQLSTATE.lockNotAvailable) throw error;
      if (this.#client === pending) this.#client = null;
      client.release(error instanceof Error ? error : new Error(String(error)));
      throw error;
    }
  }

  /** Gives the connection back to the pool; the run's guard is done with it. */
  async release(): Promise<void> {
    const pending = this.#client;
    this.#client = null;
    const client = await pending?.catch(() => null);
    if (!client) return;
    client.off('error', this.#onError);
    client.release();
  }
}

/**
 * A connection from the pool for each statement (the benchmark's and the tests' probes outside a
 * run). The probe's row locked (NOWAIT) leaves the connection sound.
 */
const perStatement = (pool: pg.Pool): ProbeConnection => ({
  use: (fn) => borrowed(pool, fn, (error) => sqlState(error) === SQLSTATE.lockNotAvailable),
});

const connectionOf = (source: pg.Pool | ProbeConnection): ProbeConnection => ('use' in source ? source : perStatement(source));

export interface ProbeOptions {
  /**
   * The longest a probe may take, timed by the client (the run's statement timeout). The probe's
   * commit can wait longer than the server's statement_timeout allows a statement: a commit
   * waiting for a synchronous standby is not bounded by it. A probe past the bound counts as that
   * slow (hot), and its connection is discarded (the next probe takes another).
   */
  readonly boundMs?: number;
  /** The probe's row was locked by another transaction: called once per detection (log, metric). */
  readonly onLocked?: () => void;
}

/** Slots a probe tries after its own when their rows are locked, before it gives up measuring (NaN). */
const LOCKED_RETRIES = 3;
const SLOTS = 1024;

class ProbeBoundExceeded extends Error {}

/** Resolves with query, or rejects with ProbeBoundExceeded after boundMs (the query's later failure is then ignored). */
async function withinBound(query: Promise<unknown>, boundMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeBoundExceeded(`the latency probe took more than ${boundMs} ms`)), boundMs);
  });
  // Settled either way, so the query's own failure (its connection discarded) is never unhandled.
  const settled = query.then(
    () => null,
    (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
  );
  try {
    const error = await Promise.race([settled, bound]);
    if (error !== null) throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One probe: the milliseconds of the tiny synchronous write (db/sql/latency-guard.ts), or NaN when
 * no slot's row could be taken without waiting for another transaction's lock (not a measurement:
 * the guard ignores it).
 */
export function commitLatencyProbe(source: pg.Pool | ProbeConnection, options: ProbeOptions = {}): LatencyProbe {
  const connection = connectionOf(source);
  const boundMs = options.boundMs ?? Number.POSITIVE_INFINITY;
  // null: the backend's own slot; after a locked row, a random one, kept while it works.
  let slot: number | null = null;
  const once = () =>
    connection.use(async (client) => {
      const started = performance.now();
      try {
        const query = client.query({ ...latencyProbe, values: [slot] });
        if (Number.isFinite(boundMs)) await withinBound(query, boundMs);
        else await query;
        return performance.now() - started;
      } catch (error) {
        // A probe that ran into statement_timeout took at least that long: a commit is that slow now.
        if (sqlState(error) === SQLSTATE.queryCanceled) return performance.now() - started;
        throw error;
      }
    });
  return async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await once();
      } catch (error) {
        if (error instanceof ProbeBoundExceeded) return boundMs;
        const state = sqlState(error);
        // NOWAIT: another transaction holds the row (a lock taken by hand, a savepoint, FOR SHARE).
        // Timing it would measure that lock; another slot's row is almost surely free.
        if (state === SQLSTATE.lockNotAvailable) {
          if (attempt === 0) options.onLocked?.();
          if (attempt >= LOCKED_RETRIES) return Number.NaN;
          slot = Math.floor(Math.random() * SLOTS);
          continue;
        }
        throw error;
      }
    }
  };
}

/** The auth service's writes to the sessions table (or `table`, an extra table's run) so far (db/sql/latency-guard.ts), or null. */
export function sessionWriteCounter(
  { pool, config }: TaskContext,
  source: pg.Pool | ProbeConnection = pool,
  table: QualifiedName = config.sessionTable,
): () => Promise<number | null> {
  const connection = connectionOf(source);
  return () =>
    connection.use(async (client) => {
      const { rows } = await client.query<{ writes: number | null }>({ ...sessionWrites, values: [qualified(table)] });
      return rows[0]?.writes ?? null;
    });
}

/** The server's next transaction id (db/sql/latency-guard.ts), or null. */
export function nextXidReader(connection: ProbeConnection): () => Promise<number | null> {
  return () =>
    connection.use(async (client) => {
      const { rows } = await client.query<{ next_xid: number | null }>(nextTransactionId);
      return rows[0]?.next_xid ?? null;
    });
}

/** One value per pool (one per worker process), made at its first use and kept between runs. */
function perPool<T>(create: () => T): (pool: pg.Pool) => T {
  const values = new WeakMap<pg.Pool, T>();
  return (pool) => {
    let value = values.get(pool);
    if (value === undefined) {
      value = create();
      values.set(pool, value);
    }
    return value;
  };
}

/** One tracker per pool and watched table: a run starts with what the runs before it read of the same table's writes. */
const trackersOf = perPool(() => new Map<string, ActivityTracker>());

export function activityTracker(pool: pg.Pool, table?: QualifiedName): ActivityTracker {
  const byTable = trackersOf(pool);
  const key = table === undefined ? '' : tableLabel(table);
  let tracker = byTable.get(key);
  if (tracker === undefined) {
    tracker = new ActivityTracker();
    byTable.set(key, tracker);
  }
  return tracker;
}

/** One window of next transaction ids per pool (tasks/latency-guard.ts, XidWindow): the guards of a process share their own ids. */
export const xidWindow = perPool(() => new XidWindow());

/**
 * Takes a reading of the auth service's write counter now (a worker about to run, the benchmark's
 * warm child): the next run then knows whether anyone writes, from ACTIVITY_SPAN_MS on.
 */
export async function primeActivity(ctx: TaskContext): Promise<void> {
  activityTracker(ctx.pool).observe(performance.now(), await sessionWriteCounter(ctx)().catch(() => null));
  const next = await nextXidReader(perStatement(ctx.pool))().catch(() => null);
  xidWindow(ctx.pool).observe(performance.now(), next);
}

/**
 * The run's latency guard, or null with JANITOR_LATENCY_GUARD=off. Call start() before the first
 * batch, and finish() when the lanes are done: it gives the guard's connection back.
 */
export function createLatencyGuard(
  ctx: TaskContext,
  task: ScheduledTaskName,
  heldBack: HeldBack,
  signal: AbortSignal,
  probe?: LatencyProbe,
): LatencyGuard | null {
  const factor = ctx.config.latencyGuardFactor;
  if (factor === null) return null;
  const connection = new RunProbeConnection(ctx.pool);
  // An extra table's run watches that table's writers (the sessions table's tracker keeps its key).
  const watched = scheduledTask(ctx.config, task).table?.table;
  return new LatencyGuard(
    { factor, minScale: ctx.config.latencyGuardMinSpeed },
    {
      probe:
        probe ??
        commitLatencyProbe(connection, {
          boundMs: ctx.config.statementTimeoutMs,
          onLocked: () => lockedProbe(ctx, task),
        }),
      activity: {
        tracker: activityTracker(ctx.pool, watched),
        read: sessionWriteCounter(ctx, connection, watched),
        transactionIds: { window: xidWindow(ctx.pool), readNext: nextXidReader(connection) },
      },
      onHeldBack: (ms, lane) => heldBack.wait('latency', ms, lane),
      onEvent: (event) => logGuardEvent(ctx, task, event),
      onFinish: () => connection.release(),
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
    `${task}: the latency guard cannot probe (session_janitor.latency_probe missing or not writable? run \`${commandLine('migrate')}\`): this run goes unguarded`,
  );
}

/** Warned about once per process; counted every time (session_janitor_latency_probe_lock_waits_total). */
let warnedLocked = false;

function lockedProbe({ log, metrics }: TaskContext, task: ScheduledTaskName): void {
  metrics.latencyProbeLockWaits.inc({ task });
  const first = !warnedLocked;
  warnedLocked = true;
  (first ? log.warn.bind(log) : log.debug.bind(log))(
    { task },
    `${task}: the latency guard's probe row (session_janitor.latency_probe) is locked by another transaction: a probe that waited for it would time the lock, not a commit; it probes another row and keeps guarding`,
  );
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;
