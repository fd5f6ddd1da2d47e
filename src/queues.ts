/**
 * The pg-boss queues of docs/CONTRACT.md and their settings. Other services send to these
 * names: they are public and never change.
 */
import type { Queue } from 'pg-boss';
import type { Config } from './config.ts';

export const QUEUES = {
  purgeExpired: 'refresh-session.purge-expired',
  reapIdle: 'refresh-session.reap-idle',
  revoke: 'refresh-session.revoke',
  deadLetter: 'refresh-session.dead-letter',
} as const;

export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

/**
 * The scheduled tasks, the one list that says which is which: the queue its runs go to, the `task`
 * label of its metrics (batch duration, last success, held back, stalled runs), the `reason` label
 * of the sessions it deletes, whether the purge throttle's brakes apply to it (the latency guard
 * applies to all), how many connections a run works on at once (its lanes), and its cron under the
 * configuration (null: off, with neither a schedule nor a consumer). The consumers, the schedules,
 * the metrics, the gauges, the batch engine (tasks/engine.ts) and the pool size (tasks/scheduled.ts)
 * are derived from it; the function that runs a task is tasks/scheduled.ts's.
 */
export const SCHEDULED_TASKS = [
  {
    task: 'purge-expired',
    queue: QUEUES.purgeExpired,
    reason: 'expired',
    throttled: true,
    lanes: (config: Config): number => config.purgeConcurrency,
    cron: (config: Config): string | null => config.purgeCron,
  },
  {
    task: 'reap-idle',
    queue: QUEUES.reapIdle,
    reason: 'idle',
    throttled: false,
    lanes: (): number => 1,
    cron: (config: Config): string | null => (config.idleTimeoutSeconds === null ? null : config.reapCron),
  },
] as const;

export type ScheduledTaskName = (typeof SCHEDULED_TASKS)[number]['task'];

export const ALL_QUEUES: readonly QueueName[] = [...SCHEDULED_TASKS.map((t) => t.queue), QUEUES.revoke, QUEUES.deadLetter];

/** The descriptor of a scheduled task. */
export function scheduledTask(task: ScheduledTaskName): (typeof SCHEDULED_TASKS)[number] {
  const found = SCHEDULED_TASKS.find((t) => t.task === task);
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
    ...SCHEDULED_TASKS.map(({ queue }) => ({ name: queue, ...scheduled })),
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
