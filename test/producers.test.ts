/**
 * Producers that enqueue with their own, older pg-boss against the worker's database (schema of
 * pg-boss 12.38): what docs/producers.md promises for each version, as tested here with the real
 * packages (npm aliases pg-boss-12-12, pg-boss-11, pg-boss-10).
 *
 * - 12.12 and later copy the queue's heartbeat_seconds into every job they send (its first version
 *   to do so): a worker's crash is taken over after the heartbeat lapses, as for the worker's own
 *   jobs. The lowest supported producer version.
 * - 11.x to 12.11 enqueue jobs the worker runs, but without a heartbeat: a revocation whose worker
 *   died is taken over only when it expires (15 minutes). Not supported.
 * - 10.x cannot send at all: its INSERT names columns that pg-boss 12 removed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startWorker, type Worker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { createTestDatabase, insertSessions, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';
import { until } from './helpers/wait.ts';

interface Producer {
  start(): Promise<unknown>;
  send(name: string, data: object): Promise<string | null>;
  stop(options: { graceful: boolean }): Promise<void>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}

type ProducerClass = new (options: { connectionString: string; supervise: boolean; schedule: boolean }) => Producer;

async function producerClass(alias: string): Promise<ProducerClass> {
  const module = (await import(alias)) as { PgBoss?: ProducerClass; default?: ProducerClass };
  const found = module.PgBoss ?? module.default;
  assert.ok(found, `${alias} exports no PgBoss`);
  return found;
}

/** Send-only, as docs/producers.md tells a producer to start pg-boss: no supervisor, no scheduler. */
async function send(alias: string, url: string, data: object): Promise<string | null> {
  const Boss = await producerClass(alias);
  const boss = new Boss({ connectionString: url, supervise: false, schedule: false });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    return await boss.send(QUEUES.revoke, data);
  } finally {
    await boss.stop({ graceful: false });
  }
}

describe('producers on older pg-boss versions', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let worker: Worker;
  before(async () => {
    db = await createTestDatabase();
    worker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), silentLogger());
  });
  after(async () => {
    await worker?.stop();
    await db?.drop();
  });

  const job = async (id: string) =>
    (
      await db.pool.query<{ state: string; heartbeat_seconds: number | null; output: { revoked?: number } | null }>(
        'SELECT state, heartbeat_seconds, output FROM pgboss.job WHERE id = $1',
        [id],
      )
    ).rows[0];

  for (const { alias, heartbeat } of [
    { alias: 'pg-boss-12-12', heartbeat: true },
    { alias: 'pg-boss-11', heartbeat: false },
  ]) {
    test(`${alias} enqueues a revocation the worker carries out; heartbeat takeover: ${heartbeat ? 'yes' : 'no (15-minute expiry)'}`, async () => {
      const sessions = await insertSessions(db.pool, [
        { expiresIn: 86_400, user: 0 },
        { expiresIn: 86_400, user: 0 },
        { expiresIn: 86_400, user: 1 },
      ]);
      const userId = sessions[0]?.userId;
      assert.ok(userId);
      const id = await send(alias, db.url, { userId, reason: alias });
      assert.ok(id, `${alias} did not enqueue`);
      const queue = (await db.pool.query<{ heartbeat_seconds: number }>('SELECT heartbeat_seconds FROM pgboss.queue WHERE name = $1', [QUEUES.revoke])).rows[0];
      const done = await until(`${alias}'s job to complete`, async () => {
        const row = await job(id);
        return row?.state === 'completed' && row;
      });
      assert.deepEqual(done.output, { revoked: 2 });
      assert.equal(done.heartbeat_seconds, heartbeat ? queue?.heartbeat_seconds : null);
      const left = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE id = ANY($1) ORDER BY id', [sessions.map((s) => s.id)]);
      assert.deepEqual(
        left.rows.map((r) => r.id),
        [sessions[2]?.id],
      );
    });
  }

  test('pg-boss-10 cannot send to a pg-boss 12 database: its insert names a column that no longer exists', async () => {
    await assert.rejects(send('pg-boss-10', db.url, { userId: 1, reason: 'pg-boss-10' }), /column "expire_in" .*does not exist/);
  });
});
