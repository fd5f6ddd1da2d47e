/** `session-janitor status [--json]`: queues, dead letters, schedules, backlog. */
import { createBoss } from '../boss.ts';
import { openDatabase } from '../db/database.ts';
import { createPool } from '../db/pool.ts';
import { createMetrics } from '../metrics.ts';
import { formatSeconds } from '../progress.ts';
import { readStatus, renderStatus } from '../status.ts';
import { setup } from './common.ts';

export async function statusCommand(options: { json?: boolean }): Promise<void> {
  const { config, log } = setup();
  const database = await openDatabase(config, log);
  const pool = createPool({ connectionString: database.connectionString, max: 1, statementTimeoutMs: config.statementTimeoutMs, lockTimeoutMs: config.lockTimeoutMs });
  // Read-only: never installs or upgrades anything.
  const boss = createBoss(config, database.connectionString, { role: 'tool', migrate: false }, log);
  try {
    await boss.start().catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}: run \`session-janitor migrate\` first`);
    });
    const status = await readStatus(boss, { pool, config, metrics: createMetrics(), log });
    process.stdout.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : renderStatus(status, formatSeconds));
  } finally {
    await boss.stop({ graceful: false });
    await pool.end();
    await database.close();
  }
}
