/**
 * pg-boss: construction, the queues of the contract and the schedules. pg-boss keeps each
 * schedule single across replicas (one job per cron occurrence, claimed through the database),
 * which node-cron cannot: node-cron only runs per-process timers here.
 */
import { PgBoss, type ConstructorOptions } from 'pg-boss';
import type pg from 'pg';
import { boundedJsonTypes } from './db/bounded-json.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { isConnectionError } from './db/errors.ts';
import type { OutageLog } from './outage-log.ts';
import { PURGE_TABLE_QUEUE_PREFIX, queueDefinitions, scheduledTasks } from './queues.ts';

export type BossRole =
  /** The worker: consumes, schedules, runs maintenance. */
  | 'worker'
  /** `migrate` and one-shot commands: no background activity. */
  | 'tool';

export interface BossOptions {
  readonly role: BossRole;
  /** Install or upgrade pg-boss's schema on start (needs CREATE on the database). */
  readonly migrate: boolean;
  /** The worker's: a lost database is logged there once, not at every retry of every loop. */
  readonly outage?: OutageLog;
}

export function createBoss(config: Config, connectionString: string, options: BossOptions, log: Logger, metrics?: Metrics): PgBoss {
  const background = options.role === 'worker';
  // `types` goes through to node-pg's Pool (pg-boss passes its options on): a job's large data is not
  // parsed by the fetch (db/bounded-json.ts).
  const bossOptions: ConstructorOptions & { types: pg.CustomTypesConfig } = {
    connectionString,
    types: boundedJsonTypes,
    schema: config.pgbossSchema,
    application_name: 'session-janitor-pgboss',
    // Polling, maintenance and the LISTEN connection; the tasks have a pool of their own.
    max: background ? 4 : 2,
    migrate: options.migrate,
    schedule: background,
    supervise: background,
    // Heartbeat and expiry failures are found by the monitor pass, claimed per queue every
    // monitorIntervalSeconds and run every superviseIntervalSeconds: one setting for both.
    superviseIntervalSeconds: config.superviseIntervalSeconds,
    monitorIntervalSeconds: config.superviseIntervalSeconds,
    // The cron pass: one instance a time claims it and sends each occurrence due in the last
    // minute, once per minute across replicas. It sends through an internal queue polled every
    // cronWorkerIntervalSeconds (pg-boss: 5 s), which never needs to be slower than the pass.
    cronMonitorIntervalSeconds: config.scheduleCheckSeconds,
    cronWorkerIntervalSeconds: Math.min(5, config.scheduleCheckSeconds),
    useListenNotify: background,
    instanceName: 'session-janitor',
    // Off (no spans, no trace context read or stored) unless the OTEL_* variables turn tracing on
    // (tracing.ts); then jobs sent here carry the sender's trace, and each job's process span
    // continues the trace its producer stored.
    openTelemetry: { enabled: config.tracing.enabled, propagateContext: config.tracing.enabled },
  };
  const boss = new PgBoss(bossOptions);
  // Unhandled, an 'error' event would kill the process; pg-boss retries its loops by itself.
  boss.on('error', (error) => {
    metrics?.errors.inc({ kind: 'pg-boss' });
    if (options.outage !== undefined && isConnectionError(error)) options.outage.failed(error, 'pg-boss');
    else log.error({ err: error }, 'pg-boss error');
  });
  boss.on('warning', (warning) => log.warn({ warning: warning.message }, 'pg-boss warning'));
  return boss;
}

/** Creates the queues, or brings their settings up to date (createQueue never updates). */
export async function ensureQueues(boss: PgBoss, config: Config): Promise<void> {
  for (const { name, policy, partition, ...settings } of queueDefinitions(config)) {
    if (await boss.getQueue(name)) {
      await boss.updateQueue(name, settings);
    } else {
      await boss.createQueue(name, { policy, ...(partition === undefined ? {} : { partition }), ...settings });
    }
  }
}

/**
 * Registers the schedules (an upsert: safe on every start). `missed: 'once'`: after an outage one
 * catch-up run, not one per missed tick.
 */
export async function ensureSchedules(boss: PgBoss, config: Config): Promise<void> {
  const tasks = scheduledTasks(config);
  for (const { queue, cron } of tasks) {
    const expression = cron(config);
    // A task turned off (reaping): remove the schedule an earlier start left, which would keep
    // queuing a job that no worker consumes (and trip the reap-stalled alert for the wrong reason).
    if (expression === null) await boss.unschedule(queue);
    else await boss.schedule(queue, expression, {}, { tz: config.cronTz, missed: 'once' });
  }
  // The same for a table taken out of JANITOR_PURGE_TABLES: its queue and history stay, its schedule goes.
  for (const { name } of await boss.getSchedules()) {
    if (name.startsWith(PURGE_TABLE_QUEUE_PREFIX) && !tasks.some((t) => t.queue === name)) await boss.unschedule(name);
  }
}
