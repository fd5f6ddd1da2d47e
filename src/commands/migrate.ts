/** `session-janitor migrate`: install or upgrade everything, then exit (a Kubernetes Job runs it). */
import { createBoss } from '../boss.ts';
import { openDatabase } from '../db/database.ts';
import { createPool } from '../db/pool.ts';
import { install } from '../install.ts';
import { requireSessionTable, setup } from './common.ts';

export async function migrateCommand(): Promise<void> {
  const { config, log } = setup();
  const database = await openDatabase(config, log);
  const pool = createPool({ connectionString: database.connectionString, max: 2, statementTimeoutMs: 0, lockTimeoutMs: 0 });
  const boss = createBoss(config, database.connectionString, { role: 'tool', migrate: true }, log);
  try {
    // Exit 1 before installing anything: pg-boss and the worker's schema do not belong in a database
    // that is not the auth database, and a migrate Job pointed at the wrong one must fail the rollout.
    await requireSessionTable(pool, config, database.connectionString, 'presence');
    await install(boss, pool, config, log, true);
    log.info({ pgbossSchema: config.pgbossSchema }, 'migrate: pg-boss schema, session_janitor schema, queues and schedules are installed');
  } finally {
    await boss.stop({ graceful: false });
    await pool.end();
    await database.close();
  }
}
