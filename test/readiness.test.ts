/**
 * A worker pointed at a database without the sessions table (not the auth database) is not ready:
 * /readyz 503 with the reason, said once at start, checked again at every ping, ready once the
 * table is there. `migrate` there refuses, before installing anything, with the same reason. A role
 * without DELETE is named the same way by the worker and by a one-shot purge.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../src/logger.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { createTestDatabase, insertSessions, remainingIds, testConfig, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { sample } from './helpers/scrape.ts';
import { until } from './helpers/wait.ts';

const readyz = async (port: number) => {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: response.status, body: await response.text() };
};

describe('a database without auth.refresh_session', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_elsewhere');
  });
  after(async () => {
    await db?.drop();
  });

  test('the worker is not ready, says why once, and becomes ready when the table appears', async () => {
    const lines: string[] = [];
    const log = createLogger('info', { write: (line: string) => void lines.push(line) });
    let worker: Worker | undefined;
    try {
      // No scheduled run in the window: a purge there would fail its job (and say so), which is not
      // what this test is about.
      worker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), log);
      const port = worker.metricsPort;
      const first = await readyz(port);
      assert.equal(first.status, 503);
      assert.match(first.body, /has no auth\.refresh_session: is DATABASE_URL the auth database\?/);
      // Two more pings (every 5 s): still not ready, and said once only.
      await new Promise((resolve) => setTimeout(resolve, 11_000));
      assert.equal((await readyz(port)).status, 503);
      assert.equal(lines.filter((line) => line.includes('has no auth.refresh_session')).length, 1, lines.join(''));
      assert.deepEqual(
        lines.filter((line) => /"level":"(warn|error)"/.test(line) && !line.includes('has no auth.refresh_session')),
        [],
        'no other warning about it',
      );

      await db.pool.query('ALTER TABLE auth.refresh_session_elsewhere RENAME TO refresh_session');
      await until('ready once the table exists', async () => (await readyz(port)).status === 200, 20_000);
    } finally {
      await worker?.stop();
      await db.pool.query('ALTER TABLE IF EXISTS auth.refresh_session_elsewhere RENAME TO refresh_session');
    }
  });

  test('migrate exits 1 with the reason, and installs nothing there', async () => {
    await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_elsewhere');
    await db.pool.query('DROP SCHEMA pgboss CASCADE');
    const result = await runCli(['migrate'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stderr, /^session-janitor: database sj_test_\w+ has no auth\.refresh_session: is DATABASE_URL the auth database\?/m);
    const { rows } = await db.pool.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgboss'");
    assert.equal(rows.length, 0, 'migrate installed pg-boss into a database that is not the auth database');
  });
});

describe('a role without DELETE on the sessions table', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  const role = `sj_readonly_${Math.random().toString(36).slice(2, 10)}`;
  before(async () => {
    db = await createTestDatabase();
    const database = new URL(db.url).pathname.slice(1);
    // Everything the worker needs (pg-boss's schema, its own) but DELETE on the sessions table.
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'readonly-test'`);
    await db.pool.query(`GRANT CONNECT ON DATABASE ${database} TO ${role}`);
    for (const schema of ['pgboss', 'session_janitor']) {
      await db.pool.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
      await db.pool.query(`GRANT ALL ON ALL TABLES IN SCHEMA ${schema} TO ${role}`);
      await db.pool.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA ${schema} TO ${role}`);
      await db.pool.query(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${schema} TO ${role}`);
    }
    await db.pool.query(`GRANT USAGE ON SCHEMA auth TO ${role}`);
    await db.pool.query(`GRANT SELECT ON auth.refresh_session TO ${role}`);
  });
  after(async () => {
    await db?.drop();
    const admin = new pg.Client({ connectionString: process.env.SJ_TEST_ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
  });

  test('purge-expired from the command line exits 1 naming the missing privilege, and deletes nothing', async () => {
    await insertSessions(db.pool, [{ expiresIn: -2 * 86_400 }, { expiresIn: -3 * 86_400 }]);
    const expired = await remainingIds(db.pool);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'readonly-test';
    const result = await runCli(['purge-expired'], { DATABASE_URL: url.toString() }).finished;
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stderr, new RegExp(`^session-janitor: ${role} lacks DELETE on auth\\.refresh_session: grant them`, 'm'));
    assert.deepEqual(await remainingIds(db.pool), expired);
    assert.equal(expired.length, 2);
  });

  test('the worker is not ready, says which privilege is missing, and reports session_janitor_database_up 0 until it is granted', async () => {
    const url = new URL(db.url);
    url.username = role;
    url.password = 'readonly-test';
    const worker = await startWorker(
      testConfig(url.toString(), { JANITOR_MIGRATE: 'false', JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }),
      createLogger('silent'),
    );
    try {
      const port = worker.metricsPort;
      const first = await readyz(port);
      assert.equal(first.status, 503);
      assert.match(first.body, new RegExp(`${role} lacks DELETE on auth\\.refresh_session`));
      assert.equal(sample(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), 'session_janitor_database_up'), 0);

      await db.pool.query(`GRANT DELETE ON auth.refresh_session TO ${role}`);
      await until('ready once DELETE is granted', async () => (await readyz(port)).status === 200, 20_000);
      assert.equal(sample(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), 'session_janitor_database_up'), 1);
    } finally {
      await worker.stop();
    }
  });
});
