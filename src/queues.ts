/**
 * The pg-boss queues of ../shared/CONTRACT.md and their settings. Other services send to these
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

export const ALL_QUEUES: readonly QueueName[] = [QUEUES.purgeExpired, QUEUES.reapIdle, QUEUES.revoke, QUEUES.deadLetter];

/**
 * Retries: a transient failure (the database restarted, a failover) usually heals within a minute,
 * so three retries with exponential backoff from JANITOR_RETRY_DELAY (15 s: about 15 s, 30 s,
 * 60 s, capped at 5 min) ride it out without a retry storm; a job that still fails is worth a
 * human's look in the dead-letter queue.
 */
const retries = (config: Config) => ({ retryLimit: 3, retryDelay: config.retryDelaySeconds, retryBackoff: true, retryDelayMax: 300 }) as const;

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
    { name: QUEUES.purgeExpired, ...scheduled },
    { name: QUEUES.reapIdle, ...scheduled },
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
