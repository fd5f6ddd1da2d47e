/**
 * The gauges every pod reports about the whole cluster (the expired backlog, queue depths, the last
 * successful run of each scheduled task), refreshed from the database by a per-process node-cron
 * timer and served from memory: a scrape never waits on the database and never fails because of
 * it. A failed refresh keeps the last values and counts an error.
 */
import cron from 'node-cron';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import type { Config } from './config.ts';
import { safeErrorMessage } from './db/errors.ts';
import { expiredBacklog, lastCompleted } from './db/sql/gauges.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { ALL_QUEUES, QUEUES } from './queues.ts';

/** The scheduled tasks whose last success is reported, by queue. */
const SCHEDULED = { [QUEUES.purgeExpired]: 'purge-expired', [QUEUES.reapIdle]: 'reap-idle' } as const;

export interface GaugeSources {
  readonly pool: pg.Pool;
  readonly boss: PgBoss;
  readonly config: Config;
  readonly metrics: Metrics;
  /** While true (the sessions table is missing, which readiness reports once), the backlog is not read. */
  readonly noSessionTable?: () => boolean;
}

export async function refreshBacklog({ pool, config, metrics }: Pick<GaugeSources, 'pool' | 'config' | 'metrics'>): Promise<void> {
  const { rows } = await pool.query<{ sessions: string; oldest_seconds: number }>({
    ...expiredBacklog(config.sessionTable),
    values: [config.expiredGraceSeconds, config.backlogCountCap],
  });
  metrics.expiredBacklogSessions.set(Number(rows[0]?.sessions ?? 0));
  metrics.expiredBacklogOldest.set(Math.max(0, rows[0]?.oldest_seconds ?? 0));
}

/**
 * pg-boss's cached queue counts (its monitor refreshes them about once a minute): cheap, a little
 * stale. `queued` is what waits to run now; `deferred` waits for a later start (a retry backoff).
 */
export async function refreshQueues({ boss, metrics }: GaugeSources): Promise<void> {
  for (const queue of await boss.getQueues([...ALL_QUEUES])) {
    metrics.queueJobs.set({ queue: queue.name, state: 'queued' }, Math.max(0, queue.queuedCount - queue.deferredCount));
    metrics.queueJobs.set({ queue: queue.name, state: 'deferred' }, queue.deferredCount);
    metrics.queueJobs.set({ queue: queue.name, state: 'active' }, queue.activeCount);
    metrics.queueJobs.set({ queue: queue.name, state: 'failed' }, queue.failedCount);
  }
}

export async function refreshLastSuccess({ pool, config, metrics }: GaugeSources): Promise<void> {
  const { rows } = await pool.query<{ name: keyof typeof SCHEDULED; completed_at: number }>({
    ...lastCompleted(config.pgbossSchema),
    values: [Object.keys(SCHEDULED)],
  });
  for (const row of rows) metrics.lastSuccess.set({ task: SCHEDULED[row.name] }, row.completed_at);
}

export async function refreshGauges(sources: GaugeSources, log: Logger): Promise<void> {
  const backlog = sources.noSessionTable?.() ? Promise.resolve() : refreshBacklog(sources);
  const results = await Promise.allSettled([backlog, refreshQueues(sources), refreshLastSuccess(sources)]);
  for (const result of results) {
    if (result.status === 'rejected') {
      sources.metrics.errors.inc({ kind: 'gauge-refresh' });
      log.warn({ err: { message: safeErrorMessage(result.reason) } }, 'gauge refresh failed; the last values stay');
    }
  }
}

/** Refreshes now, then on JANITOR_GAUGE_REFRESH_CRON; returns the stopper. */
export async function startGaugeRefresh(sources: GaugeSources, log: Logger): Promise<() => Promise<void>> {
  await refreshGauges(sources, log);
  const task = cron.schedule(sources.config.gaugeRefreshCron, () => refreshGauges(sources, log), { name: 'gauges', noOverlap: true });
  return async () => void (await task.destroy());
}
