/**
 * Where the database comes from: DATABASE_URL, or the embedded development server. Every entry
 * point (the worker, migrate, the one-shot commands) opens it here, so the embedded default behaves
 * the same everywhere.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { authTablesExist, createAuthTables, loadDemoData, type DemoData } from './dev-bootstrap.ts';
import { startEmbedded } from './embedded.ts';
import { describeDatabase } from './connection-string.ts';
import { createPool } from './pool.ts';

export interface OpenedDatabase {
  readonly connectionString: string;
  readonly embedded: boolean;
  /** Set when this start created the demo data set. */
  readonly demo: DemoData | null;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, log: Logger): Promise<OpenedDatabase> {
  if (config.databaseUrl !== undefined) {
    log.info({ database: describeDatabase(config.databaseUrl) }, 'using the database of DATABASE_URL');
    return { connectionString: config.databaseUrl, embedded: false, demo: null, close: async () => {} };
  }
  log.info({ dataDir: config.dataDir }, 'DATABASE_URL is unset: starting the embedded development PostgreSQL');
  const server = await startEmbedded({ dataDir: config.dataDir, onLog: (message) => log.debug({ postgres: message.trim() }) });
  let demo: DemoData | null = null;
  const pool = createPool({ connectionString: server.connectionString, max: 1, statementTimeoutMs: 0, lockTimeoutMs: 0 });
  try {
    if (!(await authTablesExist(pool))) {
      await createAuthTables(pool);
      log.info('created the auth tables from sql/auth.sql (embedded development database only)');
      if (config.demoData) {
        demo = await loadDemoData(pool);
        log.info({ ...demo }, `loaded demo data: ${demo.sessions} sessions of ${demo.users} users, ${demo.expired} of them expired`);
      }
    }
  } catch (error) {
    await pool.end();
    await server.stop();
    throw error;
  }
  await pool.end();
  log.info({ database: describeDatabase(server.connectionString) }, 'embedded PostgreSQL is up');
  return { connectionString: server.connectionString, embedded: true, demo, close: () => server.stop() };
}
