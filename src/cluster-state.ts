/**
 * The state of the janitor across the cluster, read from the database: queue depths (the
 * dead-letter queue included), the schedules with their last and next runs, the expired backlog,
 * the idle reaper's pass. The gauges present part of it every refresh; `status` all of it, once.
 */
import type pg from 'pg';
import type { PgBoss, QueueStats } from 'pg-boss';
import type { Config, PurgeTable } from './config.ts';
import { checkPurgeTable } from './db/purge-tables.ts';
import { loadReapPosition, type ReapPosition } from './db/reap-position.ts';
import { expiredBacklog } from './db/sql/gauges.ts';
import { latestJob } from './db/sql/status.ts';
import { parseInstant } from './db/sql/timestamps.ts';
import { allQueues, PURGE_TABLE_QUEUE_PREFIX, purgeTableTask } from './queues.ts';
import { readBlastStops } from './tasks/blast-guard.ts';
import { readPauses } from './tasks/pause.ts';

export interface QueueDepths {
  readonly queue: string;
  /** Waits to run now. */
  readonly queued: number;
  readonly active: number;
  /** Waits for a later start (a retry's backoff). */
  readonly deferred: number;
  readonly failed: number;
}

export interface ScheduleState {
  readonly queue: string;
  readonly cron: string;
  readonly timezone: string;
  /** manual: a command-line run (db/sql/manual-runs.ts), not a scheduled one. */
  readonly lastRun: { state: string; createdOn: string; completedOn: string | null; output: unknown; manual: boolean } | null;
  readonly nextRun: string | null;
}

export interface ExpiredBacklog {
  /** At most JANITOR_BACKLOG_COUNT_CAP. */
  readonly sessions: number;
  /** Since the oldest purgeable session became purgeable (expiry plus grace); 0 when none. */
  readonly oldestWaitingSeconds: number;
}

/** An extra table of JANITOR_PURGE_TABLES: its backlog, or why the worker cannot use it. */
export interface TableState {
  readonly table: string;
  readonly queue: string;
  readonly expiryColumn: string;
  readonly graceSeconds: number;
  /** null: the table cannot be used (problems says why). */
  readonly backlog: { rows: number; cap: number; capped: boolean; oldestWaitingSeconds: number } | null;
  readonly problems: readonly string[];
}

export interface ClusterState {
  readonly queues: QueueDepths[];
  readonly schedules: ScheduleState[];
  readonly expiredBacklog: ExpiredBacklog & { cap: number; capped: boolean };
  /** The pauses in force (session-janitor pause): who (the database role), why, since and until when. */
  readonly pauses: Array<{ task: string; pausedBy: string; reason: string; since: string; until: string; renewals: number }>;
  /** Runs the blast-radius guard stopped, waiting for `session-janitor confirm` (or other settings). */
  readonly blastRadiusStops: Array<{ task: string; fraction: number; trippedAt: string; settings: string }>;
  /** position null: reaping is off, or no pass has started yet. */
  readonly idleReaper: { enabled: boolean; position: ReapPosition | null };
  /** The tables of JANITOR_PURGE_TABLES, in their order (empty without it). */
  readonly tables: TableState[];
}

/** pg-boss counts deferred jobs among the queued ones. */
export function queueDepths(counts: Pick<QueueStats, 'name' | 'queuedCount' | 'deferredCount' | 'activeCount' | 'failedCount'>): QueueDepths {
  return {
    queue: counts.name,
    queued: Math.max(0, counts.queuedCount - counts.deferredCount),
    active: counts.activeCount,
    deferred: counts.deferredCount,
    failed: counts.failedCount,
  };
}

export async function readExpiredBacklog(pool: pg.Pool, config: Config): Promise<ExpiredBacklog> {
  const { rows } = await pool.query<{ sessions: string; oldest_seconds: number }>({
    ...expiredBacklog(config.sessionTable),
    values: [config.expiredGraceSeconds, config.backlogCountCap],
  });
  return { sessions: Number(rows[0]?.sessions ?? 0), oldestWaitingSeconds: Math.max(0, rows[0]?.oldest_seconds ?? 0) };
}

/** An extra table's backlog (its expiry column, its grace), or null with its problems when it cannot be used. */
export async function readTableBacklog(
  pool: pg.Pool,
  config: Config,
  table: PurgeTable,
): Promise<{ backlog: ExpiredBacklog; problems: readonly [] } | { backlog: null; problems: readonly string[] }> {
  const check = await checkPurgeTable(pool, table);
  if (check.target === null) return { backlog: null, problems: check.problems };
  const { rows } = await pool.query<{ sessions: string; oldest_seconds: number }>({
    ...expiredBacklog(check.target),
    values: [table.graceSeconds, config.backlogCountCap],
  });
  return { backlog: { sessions: Number(rows[0]?.sessions ?? 0), oldestWaitingSeconds: Math.max(0, rows[0]?.oldest_seconds ?? 0) }, problems: [] };
}

/** Everything fresh: pg-boss's counts recomputed (force), not its monitor's cache. */
export async function readClusterState(boss: PgBoss, pool: pg.Pool, config: Config): Promise<ClusterState> {
  const queues: QueueDepths[] = [];
  for (const name of allQueues(config)) {
    // An extra table's queue exists once a worker or `migrate` has run with it configured.
    const [stats] = await boss.getQueueStats(name, { force: true }).catch((error: unknown) => {
      if (name.startsWith(PURGE_TABLE_QUEUE_PREFIX)) return [];
      throw error;
    });
    queues.push(queueDepths(stats ?? { name, queuedCount: 0, deferredCount: 0, activeCount: 0, failedCount: 0 }));
  }

  const schedules: ScheduleState[] = [];
  for (const schedule of await boss.getSchedules()) {
    const { rows } = await pool.query<{ state: string; created_on: string; completed_on: string | null; output: unknown; manual: boolean }>({
      ...latestJob(config.pgbossSchema),
      values: [schedule.name],
    });
    const last = rows[0];
    const [next] = boss.previewSchedule(schedule.cron, { tz: schedule.timezone, count: 1 });
    schedules.push({
      queue: schedule.name,
      cron: schedule.cron,
      timezone: schedule.timezone,
      lastRun: last
        ? {
            state: last.state,
            createdOn: parseInstant(last.created_on).toISOString(),
            completedOn: last.completed_on === null ? null : parseInstant(last.completed_on).toISOString(),
            output: last.output,
            manual: last.manual,
          }
        : null,
      nextRun: next?.toISOString() ?? null,
    });
  }

  const backlog = await readExpiredBacklog(pool, config);
  const tables: TableState[] = [];
  for (const table of config.purgeTables) {
    const read = await readTableBacklog(pool, config, table);
    tables.push({
      table: table.label,
      queue: purgeTableTask(table).queue,
      expiryColumn: table.expiryColumn,
      graceSeconds: table.graceSeconds,
      backlog:
        read.backlog === null
          ? null
          : {
              rows: read.backlog.sessions,
              cap: config.backlogCountCap,
              capped: read.backlog.sessions >= config.backlogCountCap,
              oldestWaitingSeconds: Math.round(read.backlog.oldestWaitingSeconds),
            },
      problems: read.problems,
    });
  }
  const pauses = (await readPauses(pool)).map((p) => ({ ...p, since: p.since.toISOString(), until: p.until.toISOString() }));
  return {
    queues,
    schedules,
    pauses,
    blastRadiusStops: (await readBlastStops(pool)).map((s) => ({ ...s, trippedAt: s.trippedAt.toISOString() })),
    idleReaper: { enabled: config.idleTimeoutSeconds !== null, position: await loadReapPosition(pool, config.sessionTable) },
    expiredBacklog: {
      sessions: backlog.sessions,
      cap: config.backlogCountCap,
      capped: backlog.sessions >= config.backlogCountCap,
      oldestWaitingSeconds: Math.round(backlog.oldestWaitingSeconds),
    },
    tables,
  };
}
