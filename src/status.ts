/**
 * The state of the janitor for a human at a terminal (or a script, as JSON): queue depths
 * including the dead-letter queue, the schedules with their last and next runs, the expired
 * backlog. Everything is read fresh from the database.
 */
import type { PgBoss } from 'pg-boss';
import type { Config } from './config.ts';
import { expiredBacklog } from './db/sql/gauges.ts';
import { latestJob } from './db/sql/status.ts';
import { parseInstant } from './db/sql/timestamps.ts';
import { ALL_QUEUES } from './queues.ts';
import type { TaskContext } from './tasks/context.ts';
import { readReapPosition, type ReapPosition } from './tasks/reap-idle.ts';

export interface QueueStatus {
  readonly queue: string;
  readonly queued: number;
  readonly active: number;
  readonly deferred: number;
  readonly failed: number;
}

export interface ScheduleStatus {
  readonly queue: string;
  readonly cron: string;
  readonly timezone: string;
  readonly lastRun: { state: string; createdOn: string; completedOn: string | null; output: unknown } | null;
  readonly nextRun: string | null;
}

export interface Status {
  readonly queues: QueueStatus[];
  readonly schedules: ScheduleStatus[];
  readonly expiredBacklog: { sessions: number; cap: number; capped: boolean; oldestWaitingSeconds: number };
  /** null: reaping is off, or no pass has started yet. */
  readonly idleReaper: { enabled: boolean; position: ReapPosition | null };
}

export async function readStatus(boss: PgBoss, ctx: TaskContext): Promise<Status> {
  const { pool, config } = ctx;
  const queues: QueueStatus[] = [];
  for (const name of ALL_QUEUES) {
    const [stats] = await boss.getQueueStats(name, { force: true });
    queues.push({
      queue: name,
      queued: stats ? Math.max(0, stats.queuedCount - stats.deferredCount) : 0,
      active: stats?.activeCount ?? 0,
      deferred: stats?.deferredCount ?? 0,
      failed: stats?.failedCount ?? 0,
    });
  }

  const schedules: ScheduleStatus[] = [];
  for (const schedule of await boss.getSchedules()) {
    const { rows } = await pool.query<{ state: string; created_on: string; completed_on: string | null; output: unknown }>({
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
          }
        : null,
      nextRun: next?.toISOString() ?? null,
    });
  }

  const { rows } = await pool.query<{ sessions: string; oldest_seconds: number }>({
    ...expiredBacklog(config.sessionTable),
    values: [config.expiredGraceSeconds, config.backlogCountCap],
  });
  const sessions = Number(rows[0]?.sessions ?? 0);
  return {
    queues,
    schedules,
    idleReaper: { enabled: config.idleTimeoutSeconds !== null, position: await readReapPosition(ctx) },
    expiredBacklog: { sessions, cap: config.backlogCountCap, capped: sessions >= config.backlogCountCap, oldestWaitingSeconds: Math.round(rows[0]?.oldest_seconds ?? 0) },
  };
}

/** Left-aligned columns, a header row and a rule. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function describeReaper({ enabled, position: p }: Status['idleReaper']): string {
  if (!enabled) return 'idle reaper: off (JANITOR_IDLE_TIMEOUT=off)';
  if (p === null) return 'idle reaper: no pass yet';
  const state = p.passFinishedAt === null ? `${(p.fraction * 100).toFixed(1)}% done (id ${p.lastId} of ${p.endId})` : 'finished';
  return `idle reaper: pass ${p.pass} ${state}, ${p.passDeleted} sessions reaped in this pass, started ${p.passStartedAt.toISOString()}`;
}

export function renderStatus(status: Status, formatSeconds: (s: number) => string): string {
  const sections = [
    table(
      ['QUEUE', 'QUEUED', 'ACTIVE', 'DEFERRED', 'FAILED'],
      status.queues.map((q) => [q.queue, String(q.queued), String(q.active), String(q.deferred), String(q.failed)]),
    ),
    table(
      ['SCHEDULE', 'CRON', 'TZ', 'LAST RUN', 'LAST STATE', 'LAST OUTPUT', 'NEXT RUN'],
      status.schedules.map((s) => [
        s.queue,
        s.cron,
        s.timezone,
        s.lastRun?.createdOn ?? 'never',
        s.lastRun?.state ?? '-',
        s.lastRun?.output ? JSON.stringify(s.lastRun.output) : '-',
        s.nextRun ?? '-',
      ]),
    ),
    `expired backlog: ${status.expiredBacklog.capped ? 'at least ' : ''}${status.expiredBacklog.sessions} sessions, ` +
      `the oldest waiting ${formatSeconds(status.expiredBacklog.oldestWaitingSeconds)}`,
    describeReaper(status.idleReaper),
  ];
  return `${sections.join('\n\n')}\n`;
}
