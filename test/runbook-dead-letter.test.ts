/**
 * Whoever reads the dead-letter queue must see why each job is there. pg-boss's copy carries the
 * request but not the reason in its own output (the failed job's output is its source_output): the
 * runbook's query (docs/runbook.md, SessionJanitorDeadLetterNotEmpty) shows it, and this test runs
 * that query as it is written there.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { QUEUES } from '../src/queues.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { createTestDatabase, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';
import { until } from './helpers/wait.ts';

const RUNBOOK = readFileSync(new URL('../docs/runbook.md', import.meta.url), 'utf8');

/** The runbook's SQL block that begins with "-- What failed". */
function runbookQuery(): string {
  const block = /```sql\n(-- What failed[\s\S]*?)```/.exec(RUNBOOK)?.[1];
  assert.ok(block, 'docs/runbook.md has no "-- What failed" query');
  return block;
}

let db: TestDatabase;
let worker: Worker | undefined;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await worker?.stop();
  await db.drop();
});

test("the runbook's dead-letter query shows why each copy is there", { timeout: 120_000 }, async () => {
  worker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), silentLogger());
  // An invalid revocation, dead-lettered at once by the worker.
  const { rows } = await db.pool.query<{ id: string }>(`SELECT session_janitor.enqueue_revocation('{"userId": 0, "reason": "x"}') AS id`);
  const invalid = rows[0]?.id;
  assert.ok(invalid);
  // A job that failed for good on an error: what pg-boss stores when a handler throws and no retry is left.
  const boss = new PgBoss(db.url);
  await boss.start();
  const thrown = await boss.send(QUEUES.reapIdle, {}, { retryLimit: 0, startAfter: 3600 });
  assert.ok(thrown);
  try {
    await db.pool.query(`UPDATE pgboss.job SET state = 'active', started_on = now() WHERE id = $1`, [thrown]);
    await boss.fail(QUEUES.reapIdle, thrown, new Error('connection terminated by the server'));
  } finally {
    await boss.stop({ graceful: false });
  }

  const copies = await until('both copies in the dead-letter queue', async () => {
    const { rows: found } = await db.pool.query<{ source_id: string; reason: string | null; details: { issues?: Array<{ path: string }> } | null }>(
      runbookQuery(),
    );
    return found.length === 2 ? found : undefined;
  });
  const bySource = new Map(copies.map((c) => [c.source_id, c]));
  assert.equal(bySource.get(invalid)?.reason, 'invalid_payload');
  assert.deepEqual(
    bySource.get(invalid)?.details?.issues?.map((i) => i.path),
    ['userId'],
  );
  assert.equal(bySource.get(thrown)?.reason, 'connection terminated by the server');
});
