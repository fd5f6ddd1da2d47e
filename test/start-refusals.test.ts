/**
 * `start` refuses at once what it cannot fix: before `migrate` with JANITOR_MIGRATE=false, it says
 * to run `migrate` and leaves nothing open behind it (no pg-boss pool whose idle connections would
 * hold the process for 10 s after its one line); on a database without the sessions table it never
 * installs pg-boss or the worker's schema there, as `migrate` refuses to.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../src/logger.ts';
import { startWorker } from '../src/worker.ts';
import { createTestDatabase, testConfig, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

/** The sockets and timers this process holds, by kind. */
const handles = () => {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return { sockets: counts.get('TCPSocketWrap') ?? 0, timers: counts.get('Timeout') ?? 0 };
};

const installed = async (db: TestDatabase) =>
  (await db.pool.query<{ nspname: string }>("SELECT nspname FROM pg_namespace WHERE nspname IN ('pgboss', 'session_janitor') ORDER BY 1")).rows.map(
    (r) => r.nspname,
  );

describe('start refuses what it cannot fix, at once', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
    await db.pool.query('DROP SCHEMA pgboss CASCADE');
    await db.pool.query('DROP SCHEMA session_janitor CASCADE');
  });
  after(async () => {
    await db?.drop();
  });

  test('JANITOR_MIGRATE=false before migrate: the line that says to run migrate, and no connection or timer left open', async () => {
    const log = createLogger('silent');
    const before = handles();
    await assert.rejects(
      startWorker(testConfig(db.url, { JANITOR_MIGRATE: 'false' }), log),
      /pg-boss is not installed in schema pgboss of sj_test_\w+: run `npx session-janitor migrate` \(JANITOR_MIGRATE=false forbids the worker to do it\)/,
    );
    // Closing a socket takes a few turns of the event loop; an idle connection left open would stay
    // for pg's idle timeout (10 s), which held the process after its one line.
    await until(
      `the handles of before (sockets ${before.sockets}, timers ${before.timers}); now: ${process.getActiveResourcesInfo().join(', ')}`,
      async () => {
        const left = handles();
        return left.sockets <= before.sockets && left.timers <= before.timers;
      },
      5_000,
    );
  });

  test('a database without the sessions table: start (JANITOR_MIGRATE=true) exits 1 naming it, and installs nothing there', async () => {
    await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_elsewhere');
    try {
      const result = await runCli(['start'], { DATABASE_URL: db.url, JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1' }).finished;
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr, /^session-janitor: database sj_test_\w+ has no auth\.refresh_session: is DATABASE_URL the auth database\?/m);
      assert.deepEqual(await installed(db), [], 'start installed into a database that is not the auth database');
    } finally {
      await db.pool.query('ALTER TABLE auth.refresh_session_elsewhere RENAME TO refresh_session');
    }
  });
});
