/**
 * `session-janitor reap-idle [--dry-run]`: one reap now, in the foreground, with progress (the pass's
 * percentage from the stored position, rows reaped, ETA), then a summary. Like a scheduled run it
 * stops at JANITOR_MAX_RUN_SECONDS and resumes the pass where the last run, scheduled or not, left it,
 * and is recorded in the job history like a scheduled run, batch by batch (commands/manual-run-record.ts).
 */
import { loadReapPosition } from '../db/reap-position.ts';
import { countIdleSessions, detectStrategy, reapIdle } from '../tasks/reap-idle.ts';
import { QUEUES } from '../queues.ts';
import { runManually, setup, withTaskContext } from './common.ts';

export async function reapIdleCommand(options: { dryRun?: boolean }): Promise<void> {
  const { config, log } = setup();
  const idleSeconds = config.idleTimeoutSeconds;
  if (idleSeconds === null) {
    process.stdout.write('idle reaping is off (JANITOR_IDLE_TIMEOUT=off): nothing to do\n');
    return;
  }
  await withTaskContext(config, log, async (ctx) => {
    if (options.dryRun) {
      const output = await reapIdle(ctx, { dryRun: true });
      process.stdout.write(`dry run: ${output.wouldDelete ?? 0} sessions would be reaped (unused since before now() - ${idleSeconds}s)\n`);
      return;
    }
    const strategy = await detectStrategy(ctx);
    // Through an index the idle rows are one index range, cheap to count; walking the primary key,
    // the position in the pass says how far it is.
    const total = strategy.kind === 'index' ? await countIdleSessions(ctx) : null;
    // Ctrl-C finishes the range in flight, whose position is saved with it.
    await runManually(ctx, QUEUES.reapIdle, total, { verb: 'reaped', noun: 'idle sessions' }, (runOptions) => reapIdle(ctx, runOptions));
    if (strategy.kind === 'index') {
      process.stdout.write(`through the index ${strategy.index} on last_used_at\n`);
      return;
    }
    const position = await loadReapPosition(ctx.pool, config.sessionTable);
    if (position !== null) {
      const state =
        position.passFinishedAt === null
          ? `${(position.fraction * 100).toFixed(1)}% done (ids up to ${position.lastId} of ${position.endId}); the next run carries on`
          : `finished; the next run starts pass ${position.pass + 1}`;
      process.stdout.write(`pass ${position.pass} (started ${position.passStartedAt.toISOString()}, ${position.passDeleted} reaped in it): ${state}\n`);
    }
  });
}
