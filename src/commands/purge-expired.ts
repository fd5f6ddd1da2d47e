/** `session-janitor purge-expired [--dry-run]`: one purge now, in the foreground, with progress. */
import { formatSeconds, progressReporter } from '../progress.ts';
import { countPurgeableSessions, purgeExpired } from '../tasks/purge-expired.ts';
import { onSignals, setup, withTaskContext } from './common.ts';

export async function purgeExpiredCommand(options: { dryRun?: boolean }): Promise<void> {
  const { config, log } = setup();
  await withTaskContext(config, log, async (ctx) => {
    if (options.dryRun) {
      const output = await purgeExpired(ctx, { dryRun: true });
      process.stdout.write(`dry run: ${output.wouldDelete ?? 0} sessions would be purged (expired before now() - ${config.expiredGraceSeconds}s)\n`);
      return;
    }
    const total = await countPurgeableSessions(ctx);
    const progress = progressReporter(log, total, 'purged');
    const controller = new AbortController();
    // Ctrl-C: finish the batch in flight, then print the summary.
    onSignals(async () => controller.abort(), log, false);
    const started = performance.now();
    const output = await purgeExpired(ctx, { signal: controller.signal, onProgress: (p) => progress.update(p) });
    progress.done();
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(
      `purged ${output.deleted} sessions in ${output.batches} batches, ${formatSeconds(seconds)} (${Math.round(output.deleted / Math.max(seconds, 0.001))} rows/s), stopped by: ${output.stoppedBy}\n`,
    );
  });
}
