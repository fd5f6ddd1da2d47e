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
import { startEmbedded, type EmbeddedServer } from '../../src/db/embedded.ts';
import { TEMPLATE_DATABASE, databaseUrl, installSchema } from '../helpers/database.ts';

let server: EmbeddedServer | undefined;

export async function globalSetup(): Promise<void> {
  let adminUrl = process.env.DATABASE_URL;
  if (adminUrl === undefined || adminUrl === '') {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-test-'));
    // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
    await chmod(dataDir, 0o755);
    server = await startEmbedded({ dataDir, persistent: false });
    adminUrl = server.connectionString;
  }
  process.env.SJ_TEST_ADMIN_URL = adminUrl;
  delete process.env.DATABASE_URL;

  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DATABASE}`);
  await admin.end();

  await installSchema(databaseUrl(adminUrl, TEMPLATE_DATABASE));
}

export async function globalTeardown(): Promise<void> {
  await server?.stop();
}
