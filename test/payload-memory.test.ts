/**
 * A revocation payload that is not a request must never reach the worker's heap as parsed JSON: 5 MB
 * of jsonb text made of small values ('{}' 1,240,000 times, under both size limits) parses into more
 * objects than the pod's heap holds, and the worker died before its consumer saw the job, then
 * fetched it again after every restart. The worker runs here as in k8s/base: a child process with
 * the production heap flags.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { QUEUES } from '../src/queues.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { runCli, type Running } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

/** k8s/base/deployment.yaml's NODE_OPTIONS. */
const PRODUCTION_NODE_OPTIONS = '--max-old-space-size=160 --max-semi-space-size=4';

/** The issue's payload, 4,960,037 bytes as jsonb text. */
const AMPLIFIED = `jsonb_build_object('userId', 1, 'reason', 'x', 'pad', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 1240000)))`;

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await db.drop();
});

test('enqueue_revocation refuses a payload with a nested value no request has, before it is stored', async () => {
  const refused = await db.pool.query(`SELECT session_janitor.enqueue_revocation(${AMPLIFIED})`).then(
    () => null,
    (error: unknown) => error,
  );
  assert.ok(refused instanceof pg.DatabaseError, 'the call was accepted');
  assert.equal(refused.code, '22023');
  assert.match(refused.message, /^pad must not be a JSON array/);
  // A request with an id list of objects, or too many fields, is refused the same way; a valid one of
  // the contract's maximum size is not.
  const issue = async (payload: string) =>
    (await db.pool.query<{ issue: { path: string } | null }>(`SELECT session_janitor.revocation_shape_issue(${payload}) AS issue`)).rows[0]?.issue ?? null;
  assert.equal((await issue(`'{"userIds": [{}], "reason": "x"}'::jsonb`))?.path, 'userIds');
  assert.equal((await issue(`(SELECT jsonb_object_agg('f' || i, i) FROM generate_series(1, 17) AS i) || '{"userId": 1, "reason": "x"}'::jsonb`))?.path, '');
  assert.equal(
    await issue(`jsonb_build_object('jtis', (SELECT jsonb_agg(gen_random_uuid()) FROM generate_series(1, 100000)), 'reason', repeat('r', 200))`),
    null,
  );
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM pgboss.job WHERE name = $1`, [QUEUES.revoke]);
  assert.equal(rows[0]?.n, '0');
});

test('the worker, with the production heap, dead-letters amplified payloads sent past the SQL functions and stays up', { timeout: 240_000 }, async () => {
  let worker: Running | undefined;
  const boss = new PgBoss(db.url);
  await boss.start();
  try {
    // The documented bypass: an INSERT into pg-boss's job table, with the queue's settings.
    const { rows: inserted } = await db.pool.query<{ id: string }>(
      `INSERT INTO pgboss.job (name, data, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds, heartbeat_seconds, dead_letter)
       SELECT q.name, ${AMPLIFIED}, q.policy, q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.expire_seconds, q.deletion_seconds, q.heartbeat_seconds, q.dead_letter
         FROM pgboss.queue q WHERE q.name = $1
       RETURNING id`,
      [QUEUES.revoke],
    );
    // And a raw boss.send of the same payload.
    const sent = await boss.send(QUEUES.revoke, { userId: 1, reason: 'x', pad: Array.from({ length: 1_240_000 }, () => ({})) });
    const valid = await boss.send(QUEUES.revoke, { userId: 7, reason: 'after-the-amplified-ones' });
    const ids = [inserted[0]?.id, sent];
    assert.ok(ids.every((id) => id !== undefined && id !== null) && valid !== null);

    worker = runCli(['start'], {
      DATABASE_URL: db.url,
      NODE_OPTIONS: PRODUCTION_NODE_OPTIONS,
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
    });
    const exited = worker.finished.then((f) => {
      throw new Error(`the worker exited (code ${f.code}, signal ${f.signal}): ${f.stderr.slice(-600)}`);
    });
    const states = async () =>
      (
        await db.pool.query<{ id: string; state: string; output: { error?: string; issues?: Array<{ path: string }> } | null }>(
          `SELECT id, state::text, output FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`,
          [QUEUES.revoke, [...ids, valid]],
        )
      ).rows;
    const settled = until(
      'the three jobs to settle',
      async () => {
        const rows = await states();
        return rows.length === 3 && rows.every((r) => r.state === 'failed' || r.state === 'completed') ? rows : undefined;
      },
      180_000,
    );
    const rows = await Promise.race([settled, exited]);
    for (const id of ids) {
      const row = rows.find((r) => r.id === id);
      assert.equal(row?.state, 'failed', `job ${id}`);
      assert.equal(row?.output?.error, 'invalid_payload');
      assert.deepEqual(
        row?.output?.issues?.map((i) => i.path),
        ['pad'],
      );
    }
    assert.equal(rows.find((r) => r.id === valid)?.state, 'completed');
    // Each dead-lettered once, never retried.
    const { rows: copies } = await db.pool.query<{ source_id: string; n: string }>(
      `SELECT source_id, count(*) AS n FROM pgboss.job WHERE name = $1 AND source_id = ANY($2::uuid[]) GROUP BY source_id`,
      [QUEUES.deadLetter, ids],
    );
    assert.deepEqual(copies.map((c) => c.n).sort(), ['1', '1']);
    assert.equal(worker.child.exitCode, null, 'the worker is still running');
  } finally {
    worker?.child.kill('SIGKILL');
    await boss.stop({ graceful: false });
  }
});
