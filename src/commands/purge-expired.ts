/**
 * `session-janitor purge-expired [--dry-run]`: one purge now, in the foreground, with progress,
 * recorded in the job history like a scheduled run, batch by batch (commands/manual-run-record.ts).
 */
import { countPurgeableSessions, purgeExpired } from '../tasks/purge-expired.ts';
import { QUEUES } from '../queues.ts';
import { runManually, setup, withTaskContext } from './common.ts';

export async function purgeExpiredCommand(options: { dryRun?: boolean }): Promise<void> {
  const { config, log } = setup();
  await withTaskContext(config, log, async (ctx) => {
    if (options.dryRun) {
      const output = await purgeExpired(ctx, { dryRun: true });
      process.stdout.write(`dry run: ${output.wouldDelete ?? 0} sessions would be purged (expired before now() - ${config.expiredGraceSeconds}s)\n`);
      return;
    }
    const total = await countPurgeableSessions(ctx);
    await runManually(ctx, QUEUES.purgeExpired, total, { verb: 'purged', noun: 'sessions' }, (runOptions) => purgeExpired(ctx, runOptions));
  });
}
