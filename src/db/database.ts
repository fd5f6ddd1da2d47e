/**
 * Where the database comes from: DATABASE_URL, or the embedded development server. Every entry
 * point (the worker, migrate, the one-shot commands) opens it here, so the embedded default behaves
 * the same everywhere.
 */
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { createAuthTables, sessionTableExists, loadDemoData, type DemoData } from './dev-bootstrap.ts';
import { startEmbedded } from './embedded.ts';
import { describeDatabase } from './connection-string.ts';
import { createPool } from './pool.ts';
import { commandLine } from '../command-line.ts';

export interface OpenedDatabase {
  readonly connectionString: string;
  /** Set when this start created the demo data set. */
  readonly demo: DemoData | null;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, log: Logger): Promise<OpenedDatabase> {
  if (config.databaseUrl !== undefined) {
    log.info({ database: describeDatabase(config.databaseUrl) }, 'using the database of DATABASE_URL');
    return { connectionString: config.databaseUrl, demo: null, close: async () => {} };
  }
  // Logged once the server is up: without the package (the production image) the one line is the error.
  const server = await startEmbedded({ dataDir: config.dataDir });
  let demo: DemoData | null = null;
  const pool = createPool({ connectionString: server.connectionString, max: 1, statementTimeoutMs: 0, lockTimeoutMs: 0 });
  try {
    if (!(await sessionTableExists(pool))) {
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
  log.info(
    { dataDir: config.dataDir, database: describeDatabase(server.connectionString) },
    server.joined
      ? 'DATABASE_URL is unset: joined the embedded PostgreSQL that another process of this checkout started (the last process to leave it stops it)'
      : `DATABASE_URL is unset: embedded PostgreSQL is up (\`${commandLine('dev-url')}\` prints its DATABASE_URL, for psql or a producer)`,
  );
  return { connectionString: server.connectionString, demo, close: () => server.stop() };
}
