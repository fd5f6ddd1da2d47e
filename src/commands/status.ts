/** `session-janitor status [--json]`: queues, dead letters, schedules, backlog, the reaper's pass. */
import { createBoss } from '../boss.ts';
import { safeErrorMessage } from '../db/errors.ts';
import { formatSeconds } from '../progress.ts';
import { readStatus, renderStatus } from '../status.ts';
import { setup, withTaskContext } from './common.ts';

export async function statusCommand(options: { json?: boolean }): Promise<void> {
  const { config, log } = setup();
  await withTaskContext(config, log, async (ctx, connectionString) => {
    // Read-only: never installs or upgrades anything.
    const boss = createBoss(config, connectionString, { role: 'tool', migrate: false }, log);
    try {
      await boss.start().catch((error: unknown) => {
        const message = safeErrorMessage(error);
        if (!/pg-boss is not installed|requires migrations/.test(message)) throw error;
        const database = decodeURIComponent(new URL(connectionString).pathname.slice(1));
        throw new Error(`${message.replace(/\.$/, '')} in schema ${config.pgbossSchema} of ${database}: run \`session-janitor migrate\``);
      });
      const status = await readStatus(boss, ctx);
      process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : renderStatus(status, formatSeconds));
    } finally {
      await boss.stop({ graceful: false });
    }
  });
}
