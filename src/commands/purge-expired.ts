/**
 * `session-janitor purge-expired [--dry-run] [--table schema.table]`: one purge now, in the
 * foreground, with progress, recorded in the job history like a scheduled run, batch by batch
 * (commands/manual-run-record.ts). Without --table: the sessions table, then each table of
 * JANITOR_PURGE_TABLES in turn, each with its own progress and summary line; a table that fails is
 * said in one line and the others still go (the command then exits 1). --table: that table only.
 */
import { tableLabel, type PurgeTable } from '../config.ts';
import { safeErrorMessage } from '../db/errors.ts';
import { countPurgeableSessions, countPurgeableTableRows, purgeExpired, purgeTable } from '../tasks/purge-expired.ts';
import type { TaskContext } from '../tasks/context.ts';
import { purgeTableTask, QUEUES } from '../queues.ts';
import { runManually, setup, withTaskContext } from './common.ts';
import { CommandError, fail } from './process-edge.ts';
import { EXIT_USAGE } from './revoke.ts';

export async function purgeExpiredCommand(options: { dryRun?: boolean; table?: string }): Promise<void> {
  const { config, log } = setup();
  const sessions = tableLabel(config.sessionTable);
  const configured = [sessions, ...config.purgeTables.map((t) => t.label)];
  if (options.table !== undefined && !configured.includes(options.table)) {
    fail(
      `--table ${options.table} is not a configured table; the configured ones: ${configured.join(', ')} (JANITOR_SESSION_TABLE, JANITOR_PURGE_TABLES)`,
      EXIT_USAGE,
    );
  }
  const only = options.table;
  await withTaskContext(config, log, async (ctx) => {
    if (only === undefined || only === sessions) await purgeSessions(ctx, options.dryRun === true);
    const failures: string[] = [];
    for (const table of config.purgeTables) {
      if (only !== undefined && only !== table.label) continue;
      try {
        await purgeOneTable(ctx, table, options.dryRun === true);
      } catch (error) {
        // One table's trouble (dropped, a grant revoked) is its own: said, and the next table goes.
        const message = `${table.label}: ${safeErrorMessage(error)}`;
        process.stderr.write(`session-janitor: ${message}\n`);
        failures.push(message);
      }
    }
    if (failures.length > 0) throw new CommandError(`the purge of ${failures.length === 1 ? 'one table' : `${failures.length} tables`} failed (above)`, 1);
  });
}

async function purgeSessions(ctx: TaskContext, dryRun: boolean): Promise<void> {
  if (dryRun) {
    const output = await purgeExpired(ctx, { dryRun: true });
    process.stdout.write(`dry run: ${output.wouldDelete ?? 0} sessions would be purged (expired before now() - ${ctx.config.expiredGraceSeconds}s)\n`);
    return;
  }
  const total = await countPurgeableSessions(ctx);
  await runManually(ctx, QUEUES.purgeExpired, total, { verb: 'purged', noun: 'sessions' }, (runOptions) => purgeExpired(ctx, runOptions));
}

async function purgeOneTable(ctx: TaskContext, table: PurgeTable, dryRun: boolean): Promise<void> {
  const condition = `${table.expiryColumn} before now() - ${table.graceSeconds}s`;
  if (dryRun) {
    process.stdout.write(`dry run: ${await countPurgeableTableRows(ctx, table)} rows of ${table.label} would be purged (${condition})\n`);
    return;
  }
  const total = await countPurgeableTableRows(ctx, table);
  ctx.log.info({ table: table.label, purgeable: total }, `purging ${table.label} (${condition})`);
  await runManually(ctx, purgeTableTask(table).queue, total, { verb: 'purged', noun: `rows of ${table.label}` }, (runOptions) =>
    purgeTable(ctx, table, runOptions),
  );
}
