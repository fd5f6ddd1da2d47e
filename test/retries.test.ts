/**
 * Retries that outlast an outage (issue 17.12): every queue's retry policy keeps a job retrying for
 * at least JANITOR_RETRY_WINDOW (1 h by default) of transient failures before pg-boss dead-letters
 * it, and a revocation that fails for a while (the worker's DELETE privilege revoked) is retried,
 * not dead-lettered, and completes once the cause is gone. On a real server, with pg-boss 12.38.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { createBoss, ensureQueues } from '../src/boss.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { QUEUES, queueDefinitions } from '../src/queues.ts';
import { createTestDatabase, insertSessions, remainingIds, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';

/**
 * The shortest total wait of `limit` retries, by pg-boss 12.38's formula (plans.js failJobs: the
 * n-th retry, n from 0, waits min(retry_delay_max, max(retry_delay, 1) * 2^min(16, n + 1) / 2 * (1 + random()))).
 */
function shortestBackoffSeconds(limit: number, delay: number, delayMax: number | undefined): number {
  let total = 0;
  for (let n = 0; n < limit; n++) total += Math.min(delayMax ?? Infinity, (Math.max(delay, 1) * 2 ** Math.min(16, n + 1)) / 2);
  return total;
}

test('every retried queue keeps a job retrying for at least an hour with the defaults, and for JANITOR_RETRY_WINDOW when set', () => {
  for (const [env, window] of [
    [{}, 3600],
    [{ JANITOR_RETRY_WINDOW: '6h', JANITOR_RETRY_DELAY: '5s' }, 6 * 3600],
  ] as const) {
    const config = testConfig('postgres://localhost/x', env);
    for (const queue of queueDefinitions(config).filter((q) => q.name !== QUEUES.deadLetter)) {
      assert.equal(queue.retryBackoff, true, queue.name);
      const total = shortestBackoffSeconds(queue.retryLimit ?? 0, queue.retryDelay ?? 0, queue.retryDelayMax);
      assert.ok(total >= window, `${queue.name}: ${queue.retryLimit} retries wait ${total} s at least, not ${window}`);
      // And not much more: one retry fewer would fall short.
      assert.ok(shortestBackoffSeconds((queue.retryLimit ?? 0) - 1, queue.retryDelay ?? 0, queue.retryDelayMax) < window, queue.name);
    }
  }
});

describe('retries on a real server', () => {
  let db: TestDatabase;
  let boss: PgBoss;
  const roles: string[] = [];

  before(async () => {
    db = await createTestDatabase();
    boss = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
    await boss.start();
  });

  after(async () => {
    await boss?.stop({ graceful: false });
    await db?.drop();
    const admin = new pg.Client({ connectionString: process.env.SJ_TEST_ADMIN_URL });
    await admin.connect();
    for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
    await admin.end();
  });

  test("install brings an existing queue's retry policy up to date (updateQueue)", async () => {
    const config = testConfig(db.url);
    await db.pool.query('UPDATE pgboss.queue SET retry_limit = 3 WHERE name = ANY($1)', [[QUEUES.purgeExpired, QUEUES.reapIdle, QUEUES.revoke]]);
    await ensureQueues(boss, config);
    const { rows } = await db.pool.query<{ name: string; retry_limit: number }>(
      'SELECT name, retry_limit FROM pgboss.queue WHERE name = ANY($1) ORDER BY name',
      [[QUEUES.purgeExpired, QUEUES.reapIdle, QUEUES.revoke]],
    );
    const expected = queueDefinitions(config).find((q) => q.name === QUEUES.revoke)?.retryLimit;
    assert.ok(expected !== undefined && expected > 3);
    for (const row of rows) assert.equal(row.retry_limit, expected, row.name);
  });

  test('exclusive policy: a scheduled run waiting for its retry holds the slot, so ticks meanwhile are dropped, not piled up', async () => {
    const first = await boss.send(QUEUES.purgeExpired, {});
    assert.ok(first);
    const [job] = await boss.fetch(QUEUES.purgeExpired);
    assert.equal(job?.id, first);
    await boss.fail(QUEUES.purgeExpired, first, { error: 'database away' });
    const { rows } = await db.pool.query<{ state: string }>('SELECT state::text FROM pgboss.job WHERE id = $1', [first]);
    assert.equal(rows[0]?.state, 'retry');
    assert.equal(await boss.send(QUEUES.purgeExpired, {}), null, 'a tick was queued beside the run in retry');
    await boss.cancel(QUEUES.purgeExpired, first);
    assert.ok(await boss.send(QUEUES.purgeExpired, {}), 'the slot is free once the run ended');
  });

  test(
    'a revocation that fails while the worker may not DELETE is retried past the old limit of 3, not dead-lettered, and completes once the grant is back',
    { timeout: 120_000 },
    async () => {
      const role = `sj_worker_${randomBytes(5).toString('hex')}`;
      const password = randomBytes(12).toString('hex');
      roles.push(role);
      await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
      for (const statement of [
        `GRANT USAGE ON SCHEMA pgboss, session_janitor, auth TO ${role}`,
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgboss, session_janitor TO ${role}`,
        `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgboss, session_janitor TO ${role}`,
        `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgboss TO ${role}`,
        // SELECT only: every DELETE of the revocation fails with insufficient_privilege.
        `GRANT SELECT ON auth.refresh_session TO ${role}`,
      ]) {
        await db.pool.query(statement);
      }
      const url = new URL(db.url);
      url.username = role;
      url.password = password;
      const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }, { expiresIn: 86_400 }]);
      const target = sessions[0];
      assert.ok(target);
      let worker: Worker | undefined;
      try {
        worker = await startWorker(testConfig(url.toString(), { JANITOR_MIGRATE: 'false', JANITOR_RETRY_DELAY: '1s' }), silentLogger());
        const id = (
          await db.pool.query<{ id: string }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [
            JSON.stringify({ userId: target.userId, reason: 'outage' }),
          ])
        ).rows[0]?.id;
        assert.ok(id);
        const job = async () =>
          (
            await db.pool.query<{ state: string; retry_count: number; retry_limit: number; output: { error?: string; message?: string } | null }>(
              'SELECT state::text, retry_count, retry_limit, output FROM pgboss.job WHERE id = $1',
              [id],
            )
          ).rows[0];
        // Each failed attempt: the job waits in retry. Rather than wait out the backoff, the test
        // brings the next attempt forward; pg-boss counts it all the same.
        for (let attempt = 1; attempt <= 5; attempt++) {
          const deadline = performance.now() + 20_000;
          let row = await job();
          while (!(row?.state === 'retry' && row.retry_count === attempt) && performance.now() < deadline) {
            assert.notEqual(row?.state, 'failed', `dead-lettered after ${attempt - 1} retries: ${JSON.stringify(row)}`);
            await sleep(50);
            row = await job();
          }
          assert.equal(row?.state, 'retry', `attempt ${attempt}: ${JSON.stringify(row)}`);
          assert.match(row?.output?.message ?? '', /permission denied/);
          assert.ok((row?.retry_limit ?? 0) > 5, `retry_limit ${row?.retry_limit}`);
          if (attempt < 5) await db.pool.query('UPDATE pgboss.job SET start_after = now() WHERE id = $1', [id]);
        }
        const { rows: dead } = await db.pool.query('SELECT 1 FROM pgboss.job WHERE name = $1 AND source_id = $2', [QUEUES.deadLetter, id]);
        assert.deepEqual(dead, []);

        await db.pool.query(`GRANT DELETE ON auth.refresh_session TO ${role}`);
        await db.pool.query('UPDATE pgboss.job SET start_after = now() WHERE id = $1', [id]);
        const deadline = performance.now() + 20_000;
        let row = await job();
        while (row?.state !== 'completed' && performance.now() < deadline) {
          await sleep(50);
          row = await job();
        }
        assert.equal(row?.state, 'completed', JSON.stringify(row));
        assert.deepEqual(row?.output, { revoked: 1 });
        assert.ok(!(await remainingIds(db.pool)).includes(target.id));
      } finally {
        await worker?.stop();
      }
    },
  );
});
