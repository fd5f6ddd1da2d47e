/**
 * The gauges every pod reports about the whole cluster (the expired backlog, queue depths, the last
 * successful run of each scheduled task), refreshed from the database by a per-process node-cron
 * timer and served from memory: a scrape never waits on the database and never fails because of
 * it. A failed refresh keeps the last values and counts an error. The same timer counts the rows of
 * manual runs (countManualRuns).
 */
import cron from 'node-cron';
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { tableLabel, type Config } from './config.ts';
import { queueDepths, readExpiredBacklog, readTableBacklog } from './cluster-state.ts';
import { lastCompleted } from './db/sql/gauges.ts';
import { claimManualRuns } from './db/sql/manual-runs.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { isConnectionError } from './db/errors.ts';
import type { OutageLog } from './outage-log.ts';
import { allQueues, scheduledTasks, SCHEDULED_TASKS } from './queues.ts';
import type { ClockCheck } from './tasks/clock-check.ts';
import { readBlastStops } from './tasks/blast-guard.ts';
import { PAUSE_TASKS, readPauses } from './tasks/pause.ts';

export interface GaugeSources {
  readonly pool: pg.Pool;
  readonly boss: PgBoss;
  readonly config: Config;
  readonly metrics: Metrics;
  /** While true (the sessions table is missing, which readiness reports once), the backlog is not read. */
  readonly noSessionTable?: () => boolean;
  /**
   * Whether Prometheus has scraped this pod yet. Manual runs are counted only after that: an
   * increment before a series' first scrape is lost to rate() and increase(), so a fresh pod that
   * claimed a run at once would count it for nobody.
   */
  readonly scraped?: () => boolean;
  /** Measured at each refresh (tasks/clock-check.ts). */
  readonly clock?: ClockCheck;
  /** A database outage is logged there, once, not at every refresh. */
  readonly outage?: OutageLog;
}

export async function refreshBacklog({ pool, config, metrics }: Pick<GaugeSources, 'pool' | 'config' | 'metrics'>): Promise<void> {
  const backlog = await readExpiredBacklog(pool, config);
  metrics.expiredBacklogSessions.set(backlog.sessions);
  metrics.expiredBacklogOldest.set(backlog.oldestWaitingSeconds);
  metrics.tableBacklogRows.set({ table: tableLabel(config.sessionTable) }, backlog.sessions);
  metrics.tableBacklogOldest.set({ table: tableLabel(config.sessionTable) }, backlog.oldestWaitingSeconds);
}

/**
 * The backlog of each table of JANITOR_PURGE_TABLES. A table the worker cannot use keeps its last
 * values (readiness and its failing runs say why); the others are read all the same.
 */
export async function refreshTableBacklogs({ pool, config, metrics }: Pick<GaugeSources, 'pool' | 'config' | 'metrics'>): Promise<void> {
  for (const table of config.purgeTables) {
    const { backlog } = await readTableBacklog(pool, config, table);
    if (backlog === null) continue;
    metrics.tableBacklogRows.set({ table: table.label }, backlog.sessions);
    metrics.tableBacklogOldest.set({ table: table.label }, backlog.oldestWaitingSeconds);
  }
}

/** pg-boss's cached queue counts (its monitor refreshes them about once a minute): cheap, a little stale. */
export async function refreshQueues({ boss, config, metrics }: GaugeSources): Promise<void> {
  for (const counts of await boss.getQueues([...allQueues(config)])) {
    const { queue, ...states } = queueDepths(counts);
    for (const [state, jobs] of Object.entries(states)) metrics.queueJobs.set({ queue, state }, jobs);
  }
}

export async function refreshLastSuccess({ pool, config, metrics }: GaugeSources): Promise<void> {
  const { rows } = await pool.query<{ name: string; completed_at: number }>({
    ...lastCompleted(config.pgbossSchema),
    values: [scheduledTasks(config).map((t) => t.queue)],
  });
  for (const { task, queue } of scheduledTasks(config)) {
    const row = rows.find((r) => r.name === queue);
    if (row !== undefined) metrics.lastSuccess.set({ task }, row.completed_at);
  }
}

/** The blast-radius stops no operator has confirmed (tasks/blast-guard.ts). */
export async function refreshBlastStops({ pool, metrics }: Pick<GaugeSources, 'pool' | 'metrics'>): Promise<void> {
  const stops = await readBlastStops(pool);
  for (const { task } of SCHEDULED_TASKS) metrics.blastRadiusStopped.set({ task }, stops.some((s) => s.task === task) ? 1 : 0);
}

/** The pauses in force (tasks/pause.ts): a task not paused reads 0 in all three gauges. */
export async function refreshPauses({ pool, metrics }: Pick<GaugeSources, 'pool' | 'metrics'>): Promise<void> {
  const pauses = await readPauses(pool);
  for (const task of PAUSE_TASKS) {
    const pause = pauses.find((p) => p.task === task);
    metrics.pausedUntil.set({ task }, pause === undefined ? 0 : pause.until.getTime() / 1000);
    metrics.pausedSince.set({ task }, pause === undefined ? 0 : pause.since.getTime() / 1000);
    metrics.pauseRenewals.set({ task }, pause?.renewals ?? 0);
  }
}

/**
 * Adds the rows of manual runs no worker has counted yet to session_janitor_sessions_deleted_total
 * (db/sql/manual-runs.ts): the dashboard's panels and rate() see a manual purge like a scheduled one.
 */
export async function countManualRuns({ pool, config, metrics }: GaugeSources, log: Logger): Promise<void> {
  const { rows } = await pool.query<{ name: string; deleted: number }>({
    ...claimManualRuns(config.pgbossSchema),
    values: [scheduledTasks(config).map((t) => t.queue)],
  });
  for (const { name, deleted } of rows) {
    const task = scheduledTasks(config).find((t) => t.queue === name);
    if (task === undefined) continue;
    if (task.table === undefined) metrics.sessionsDeleted.inc({ reason: task.reason }, deleted);
    metrics.rowsDeleted.inc({ table: task.table?.label ?? tableLabel(config.sessionTable), reason: task.reason }, deleted);
    log.info({ queue: name, deleted }, 'counted a manual run recorded in the job history');
  }
}

export async function refreshGauges(sources: GaugeSources, log: Logger): Promise<void> {
  const backlog = sources.noSessionTable?.() ? Promise.resolve() : refreshBacklog(sources);
  const manualRuns = sources.scraped?.() ? countManualRuns(sources, log) : Promise.resolve();
  const results = await Promise.allSettled([
    backlog,
    refreshTableBacklogs(sources),
    refreshQueues(sources),
    refreshLastSuccess(sources),
    refreshPauses(sources),
    refreshBlastStops(sources),
    sources.clock?.measure(sources.pool),
    manualRuns,
  ]);
  for (const result of results) {
    if (result.status === 'rejected') {
      sources.metrics.errors.inc({ kind: 'gauge-refresh' });
      if (sources.outage !== undefined && isConnectionError(result.reason)) sources.outage.failed(result.reason, 'gauges');
      else log.warn({ err: result.reason }, 'gauge refresh failed; the last values stay');
    }
  }
}

/** Refreshes now, then on JANITOR_GAUGE_REFRESH_CRON; returns the stopper. */
export async function startGaugeRefresh(sources: GaugeSources, log: Logger): Promise<() => Promise<void>> {
  await refreshGauges(sources, log);
  const task = cron.schedule(sources.config.gaugeRefreshCron, () => refreshGauges(sources, log), { name: 'gauges', noOverlap: true });
  return async () => void (await task.destroy());
}
