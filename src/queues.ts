/**
 * The pg-boss queues of docs/CONTRACT.md and their settings. Other services send to these
 * names: they are public and never change.
 */
import type { Queue } from 'pg-boss';
import type { Config, PurgeTable } from './config.ts';

export const QUEUES = {
  purgeExpired: 'refresh-session.purge-expired',
  reapIdle: 'refresh-session.reap-idle',
  revoke: 'refresh-session.revoke',
  deadLetter: 'refresh-session.dead-letter',
} as const;

/** The queue of an extra table's purge (JANITOR_PURGE_TABLES): one per table, named after it. */
export type PurgeTableQueue = `refresh-session.purge-table.${string}`;
export const PURGE_TABLE_QUEUE_PREFIX = 'refresh-session.purge-table.';

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES] | PurgeTableQueue;

/**
 * A scheduled task, the one description that says which is which: the queue its runs go to, the
 * `task` label of its metrics (batch duration, last success, held back, stalled runs), the `reason`
 * label of the rows it deletes, whether the purge throttle's brakes apply to it (the latency guard
 * applies to all), how many connections a run works on at once (its lanes), its cron under the
 * configuration (null: off, with neither a schedule nor a consumer), the privileges its role needs
 * on its table, and, for an extra table of JANITOR_PURGE_TABLES, that table. The consumers, the
 * schedules, the metrics, the gauges, the readiness check (the privileges included), the batch
 * engine (tasks/engine.ts), the pool size (tasks/pool-size.ts) and the CLI read it through
 * scheduledTasks(config); the function that runs a task is tasks/scheduled.ts's.
 */
export interface ScheduledTask {
  readonly task: ScheduledTaskName;
  readonly queue: QueueName;
  readonly reason: 'expired' | 'idle';
  readonly throttled: boolean;
  readonly lanes: (config: Config) => number;
  readonly cron: (config: Config) => string | null;
  /** What the worker's role needs on the task's table: readiness and the commands check them before a run. */
  readonly privileges: readonly TablePrivilege[];
  /** An extra table's purge: the table (absent: the sessions table). */
  readonly table?: PurgeTable;
}

export type ScheduledTaskName = 'purge-expired' | 'reap-idle' | `purge-table:${string}`;

/**
 * A privilege on a table (has_table_privilege's name) that sql/roles.sql grants the worker. A
 * DELETE that filters reads the columns it filters on, so every deleting task needs SELECT too.
 */
export type TablePrivilege = 'SELECT' | 'DELETE';

const DELETES: readonly TablePrivilege[] = ['SELECT', 'DELETE'];

/** What a revocation (QUEUES.revoke) needs on the sessions table. */
export const REVOKE_PRIVILEGES: readonly TablePrivilege[] = DELETES;

/** The sessions table's tasks, there whatever the configuration. */
export const SCHEDULED_TASKS: readonly ScheduledTask[] = [
  {
    task: 'purge-expired',
    queue: QUEUES.purgeExpired,
    reason: 'expired',
    throttled: true,
    lanes: (config: Config): number => config.purgeConcurrency,
    cron: (config: Config): string | null => config.purgeCron,
    privileges: DELETES,
  },
  {
    task: 'reap-idle',
    queue: QUEUES.reapIdle,
    reason: 'idle',
    throttled: false,
    lanes: (): number => 1,
    cron: (config: Config): string | null => (config.idleTimeoutSeconds === null ? null : config.reapCron),
    privileges: DELETES,
  },
];

/** What the worker's role needs on the sessions table: what its scheduled tasks and the revocations need. */
export const SESSION_TABLE_PRIVILEGES: readonly TablePrivilege[] = [...new Set([...SCHEDULED_TASKS.flatMap((t) => t.privileges), ...REVOKE_PRIVILEGES])];

/**
 * An extra table's purge: a task of its own (its own queue, so its own exclusive run once per
 * period across replicas, its own job history, and a failure that is its own and never stops the
 * sessions table's purge or another table's), on the purge's cron, with the purge's brakes. One
 * lane: these tables are small beside the sessions table, and a lane per table already lets the
 * tables go at once.
 */
export function purgeTableTask(table: PurgeTable): ScheduledTask {
  return {
    task: `purge-table:${table.label}`,
    queue: `${PURGE_TABLE_QUEUE_PREFIX}${table.label}`,
    reason: 'expired',
    throttled: true,
    lanes: (): number => 1,
    cron: (config: Config): string | null => config.purgeCron,
    privileges: DELETES,
    table,
  };
}

/** Every scheduled task of this configuration: the sessions table's, then one per extra table. */
export function scheduledTasks(config: Pick<Config, 'purgeTables'>): readonly ScheduledTask[] {
  return [...SCHEDULED_TASKS, ...config.purgeTables.map(purgeTableTask)];
}

/** Every queue this configuration uses. */
export function allQueues(config: Pick<Config, 'purgeTables'>): readonly QueueName[] {
  return [...scheduledTasks(config).map((t) => t.queue), QUEUES.revoke, QUEUES.deadLetter];
}

/** The queues without any extra table (JANITOR_PURGE_TABLES unset). */
export const ALL_QUEUES: readonly QueueName[] = allQueues({ purgeTables: [] });

/** The descriptor of a scheduled task. */
export function scheduledTask(config: Pick<Config, 'purgeTables'>, task: ScheduledTaskName): ScheduledTask {
  const found = scheduledTasks(config).find((t) => t.task === task);
  if (found === undefined) throw new Error(`no scheduled task ${task}`);
  return found;
}

/**
 * Retries: a job that fails for a reason other than its payload (the database restarted, refused the
 * login or a privilege, a failover, a lock held for long) is retried with exponential backoff for at
 * least JANITOR_RETRY_WINDOW (1 h by default) before pg-boss dead-letters it: a revocation stays
 * wanted however long the database is away, and a purge or reap run must not end in the dead-letter
 * queue because of an outage. Only an invalid payload is dead-lettered at once (consumers/revoke.ts).
 * The first retry waits about JANITOR_RETRY_DELAY (15 s), each next one twice as long, at most
 * RETRY_DELAY_MAX_SECONDS; retryLimit is the fewest retries whose shortest total wait reaches the
 * window (16 with the defaults: 3765 s at least, up to twice that with pg-boss's jitter).
 *
 * The exclusive scheduled queues: a run waiting for its retry holds the queue's slot (pg-boss's
 * unique index covers states up to active, retry included), so the ticks during an outage are
 * dropped rather than piled up, and the run itself catches up at most RETRY_DELAY_MAX_SECONDS after
 * the database is back. `migrate` (install: ensureQueues, updateQueue) applies a new policy to
 * existing queues; jobs already queued keep the policy they were created with.
 */
const RETRY_DELAY_MAX_SECONDS = 300;

const retries = (config: Config) =>
  ({
    retryLimit: retryLimitFor(config.retryWindowSeconds, config.retryDelaySeconds, RETRY_DELAY_MAX_SECONDS),
    retryDelay: config.retryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: RETRY_DELAY_MAX_SECONDS,
  }) as const;

/**
 * The fewest retries whose shortest total wait reaches `windowSeconds`. pg-boss 12.38 (plans.js,
 * failJobs) waits before retry n + 1 (n from 0): min(retryDelayMax, max(retryDelay, 1) * 2^min(16, n + 1) / 2 * (1 + random())).
 */
export function retryLimitFor(windowSeconds: number, delaySeconds: number, delayMaxSeconds: number): number {
  let retries = 0;
  for (let waited = 0; waited < windowSeconds; retries++) {
    waited += Math.min(delayMaxSeconds, (Math.max(delaySeconds, 1) * 2 ** Math.min(16, retries + 1)) / 2);
  }
  return retries;
}

/**
 * Heartbeats (JANITOR_HEARTBEAT, 30 s by default): a job that lost its process (kill -9, an evicted
 * node) is failed by pg-boss's supervisor (every JANITOR_SUPERVISE_INTERVAL, 60 s by default) once
 * its heartbeat is that old, and retried after the retry delay, instead of blocking the exclusive
 * queue until expireInSeconds. pg-boss refreshes the heartbeat every heartbeat / 2 while the
 * handler runs; 30 s keeps the database traffic negligible and the takeover within about two
 * minutes (heartbeat + supervise interval + retry delay).
 */

/** Settings of each queue, derived from the configuration where the run budget matters. */
export function queueDefinitions(config: Config): Array<Queue & { name: QueueName }> {
  /**
   * A run stops itself at JANITOR_MAX_RUN_SECONDS; expiry is the backstop for a handler that hangs.
   * One extra minute covers the batch in flight and the statement timeout.
   */
  const scheduledExpiry = config.maxRunSeconds + 60 + Math.ceil(config.statementTimeoutMs / 1000);
  const scheduled = {
    // exclusive: at most one job queued or active, so two purges never overlap and missed ticks
    // never pile up behind a long run (a tick that finds a run in progress is dropped by pg-boss).
    policy: 'exclusive',
    expireInSeconds: scheduledExpiry,
    heartbeatSeconds: config.heartbeatSeconds,
    deadLetter: QUEUES.deadLetter,
    // Completed runs stay a week: the status command and last-success gauge read them.
    deleteAfterSeconds: 7 * 86400,
    ...retries(config),
  } as const;
  return [
    // The dead-letter queue must exist before the queues that name it. Its jobs are for humans:
    // keep them a month, never retry them.
    { name: QUEUES.deadLetter, policy: 'standard', retentionSeconds: 30 * 86400, deleteAfterSeconds: 30 * 86400, retryLimit: 0 },
    ...scheduledTasks(config).map(({ queue }) => ({ name: queue, ...scheduled })),
    {
      name: QUEUES.revoke,
      policy: 'standard',
      // A revocation is chunked into short statements; 15 minutes is far above 100000 users.
      expireInSeconds: 900,
      heartbeatSeconds: config.heartbeatSeconds,
      deadLetter: QUEUES.deadLetter,
      deleteAfterSeconds: 7 * 86400,
      // Revocations are urgent: wake workers through LISTEN/NOTIFY rather than the next poll.
      notify: true,
      ...retries(config),
    },
  ];
}
