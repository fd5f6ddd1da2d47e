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
 * so three retries with exponential backoff from 15 s (about 15 s, 30 s, 60 s, capped at 5 min)
 * ride it out without a retry storm; a job that still fails is worth a human's look in the
 * dead-letter queue.
 */
const RETRIES = { retryLimit: 3, retryDelay: 15, retryBackoff: true, retryDelayMax: 300 } as const;

/**
 * Heartbeats: a scheduled run that lost its process (kill -9, an evicted node) is seen by pg-boss's
 * monitor after heartbeatSeconds without a heartbeat and retried, instead of blocking the exclusive
 * queue until expireInSeconds. pg-boss refreshes the heartbeat every heartbeatSeconds / 2 while the
 * handler runs; 30 s keeps the database traffic negligible and the takeover under a minute or two.
 */
const HEARTBEAT_SECONDS = 30;

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
    heartbeatSeconds: HEARTBEAT_SECONDS,
    deadLetter: QUEUES.deadLetter,
    // Completed runs stay a week: the status command and last-success gauge read them.
    deleteAfterSeconds: 7 * 86400,
    ...RETRIES,
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
      heartbeatSeconds: HEARTBEAT_SECONDS,
      deadLetter: QUEUES.deadLetter,
      deleteAfterSeconds: 7 * 86400,
      // Revocations are urgent: wake workers through LISTEN/NOTIFY rather than the next poll.
      notify: true,
      ...RETRIES,
    },
  ];
}
