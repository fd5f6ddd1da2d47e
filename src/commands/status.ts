/** `session-janitor status [--json]`: queues, dead letters, schedules, backlog, the reaper's pass, the tables of JANITOR_PURGE_TABLES. */
import { createBoss } from '../boss.ts';
import { readClusterState, type ClusterState } from '../cluster-state.ts';
import { formatSeconds } from './progress.ts';
import { setup, withTaskContext } from './common.ts';

export async function statusCommand(options: { json?: boolean }): Promise<void> {
  const { config, log } = setup();
  await withTaskContext(
    config,
    log,
    async (ctx, connectionString) => {
      // Read-only: never installs or upgrades anything.
      const boss = createBoss(config, connectionString, { role: 'tool', migrate: false }, log);
      try {
        // withTaskContext has checked pg-boss's schema version: its start cannot refuse it.
        await boss.start();
        const status = await readClusterState(boss, ctx.pool, config);
        process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : renderStatus(status));
      } finally {
        await boss.stop({ graceful: false });
      }
    },
    // It deletes nothing: a role that may read but not delete (an SRE's) can ask.
    'presence',
  );
}

/** Left-aligned columns, a header row and a rule. */
function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function describeReaper({ enabled, position: p }: ClusterState['idleReaper']): string {
  if (!enabled) return 'idle reaper: off (JANITOR_IDLE_TIMEOUT=off)';
  if (p === null) return 'idle reaper: no pass yet';
  const state = p.passFinishedAt === null ? `${(p.fraction * 100).toFixed(1)}% done (id ${p.lastId} of ${p.endId})` : 'finished';
  return `idle reaper: pass ${p.pass} ${state}, ${p.passDeleted} sessions reaped in this pass, started ${p.passStartedAt.toISOString()}`;
}

function describePauses(pauses: ClusterState['pauses']): string {
  if (pauses.length === 0) return 'paused: none';
  return table(
    ['PAUSED', 'BY', 'SINCE', 'UNTIL', 'RENEWALS', 'REASON'],
    pauses.map((p) => [p.task, p.pausedBy, p.since, p.until, String(p.renewals), p.reason]),
  );
}

function renderStatus(status: ClusterState): string {
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
        s.lastRun ? `${s.lastRun.state}${s.lastRun.manual ? ' (manual)' : ''}` : '-',
        s.lastRun?.output ? JSON.stringify(s.lastRun.output) : '-',
        s.nextRun ?? '-',
      ]),
    ),
    `expired backlog: ${status.expiredBacklog.capped ? 'at least ' : ''}${status.expiredBacklog.sessions} sessions, ` +
      `the oldest waiting ${formatSeconds(status.expiredBacklog.oldestWaitingSeconds)}`,
    describeReaper(status.idleReaper),
    ...(status.tables.length === 0
      ? []
      : [
          table(
            ['TABLE', 'EXPIRES ON', 'GRACE', 'BACKLOG', 'OLDEST WAITING', 'PROBLEM'],
            status.tables.map((t) => [
              t.table,
              t.expiryColumn,
              formatSeconds(t.graceSeconds),
              t.backlog === null ? '-' : `${t.backlog.capped ? 'at least ' : ''}${t.backlog.rows} rows`,
              t.backlog === null ? '-' : formatSeconds(t.backlog.oldestWaitingSeconds),
              t.problems.join('; ') || '-',
            ]),
          ),
        ]),
    describePauses(status.pauses),
    ...status.blastRadiusStops.map(
      (s) =>
        `STOPPED by the blast-radius guard: ${s.task} since ${s.trippedAt}, ${(s.fraction * 100).toFixed(1)}% of the table would go retroactively (${s.settings}); \`session-janitor confirm ${s.task} --reason ...\` lets it go on`,
    ),
  ];
  return `${sections.join('\n\n')}\n`;
}
