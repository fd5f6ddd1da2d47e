/**
 * A manual purge counts each batch as it commits, as a scheduled run does: one whose connection the
 * server ends (exit 1) and one killed with -9 part-way leave their deletes in the job history, and a
 * worker adds exactly those rows to session_janitor_sessions_deleted_total, once. Before, neither
 * left a record, and their rows were never counted.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { QUEUES } from '../../src/queues.ts';
import { startWorker, type Worker } from '../../src/worker.ts';
import { createTestDatabase, insertBulkSessions, silentLogger, testConfig, type TestDatabase } from '../helpers/database.ts';
import { runCli, type Running } from '../helpers/process.ts';
import { sample } from '../helpers/scrape.ts';
import { until } from '../helpers/wait.ts';

const SESSIONS = 40_000;

let db: TestDatabase;
let worker: Worker | undefined;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await worker?.stop();
  await db.drop();
});

/** A slow purge: small batches, each followed by a pause (duty cycle 20%). */
const SLOW_PURGE = {
  JANITOR_BATCH_SIZE: '200',
  JANITOR_BATCH_MIN_SIZE: '100',
  JANITOR_BATCH_MAX_SIZE: '200',
  JANITOR_PURGE_BATCH_MAX_SIZE: '200',
  JANITOR_PURGE_DUTY_CYCLE: '20',
  JANITOR_LATENCY_GUARD: 'off',
  JANITOR_HEARTBEAT: '10s',
};

const gone = async () => SESSIONS - Number((await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM auth.refresh_session')).rows[0]?.n);

interface Row {
  id: string;
  state: string;
  deleted: number;
}
const records = async (): Promise<Row[]> =>
  (
    await db.pool.query<Row>(
      `SELECT id, state::text, (data->>'deleted')::int AS deleted FROM pgboss.job WHERE name = $1 AND data @> '{"manual": true}' ORDER BY created_on`,
      [QUEUES.purgeExpired],
    )
  ).rows;

/** Starts a slow manual purge and waits until its record shows at least `rows` more deletes than before. */
async function purgeUntil(rows: number): Promise<Running> {
  const before = (await records()).length;
  const cli = runCli(['purge-expired'], { DATABASE_URL: db.url, ...SLOW_PURGE });
  await until('the manual run to record its batches', async () => ((await records())[before]?.deleted ?? 0) >= rows, 60_000);
  return cli;
}

test('a manual purge killed with -9, or whose connection the server ends, is counted batch by batch, once', { timeout: 240_000 }, async () => {
  await insertBulkSessions(db.pool, SESSIONS, 1);

  // kill -9: stopped first, at a moment when every batch it committed is recorded (a batch still
  // in flight on the server has finished by then), then killed.
  const killed = await purgeUntil(2000);
  const pid = killed.child.pid;
  assert.ok(pid !== undefined);
  for (let attempt = 0; ; attempt++) {
    process.kill(pid, 'SIGSTOP');
    await sleep(300);
    if ((await records())[0]?.deleted === (await gone())) break;
    assert.ok(attempt < 50, 'the record never caught up with the committed batches');
    process.kill(pid, 'SIGCONT');
    await sleep(20 + attempt * 7);
  }
  process.kill(pid, 'SIGKILL');
  const killedExit = await killed.finished;
  assert.equal(killedExit.signal, 'SIGKILL');
  const afterKill = await gone();
  assert.ok(afterKill > 0 && afterKill < SESSIONS);

  // The server ends its connections: the run fails (exit 1) and says what it deleted.
  const terminated = await purgeUntil(1000);
  await db.pool.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'session-janitor' AND pid <> pg_backend_pid()`,
  );
  const terminatedExit = await terminated.finished;
  assert.equal(terminatedExit.code, 1, terminatedExit.stderr);
  const total = await gone();
  assert.ok(total > afterKill && total < SESSIONS, `${total} rows gone`);
  const [first, second] = await records();
  assert.equal(first?.deleted, afterKill);
  assert.equal(second?.state, 'failed');
  assert.equal((first?.deleted ?? 0) + (second?.deleted ?? 0), total);

  // A worker counts both runs' rows, exactly; pg-boss's supervisor fails the killed run's record
  // once its heartbeat is stale, and it stays in the job history.
  worker = await startWorker(
    testConfig(db.url, {
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
      JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      JANITOR_SUPERVISE_INTERVAL: '1s',
      JANITOR_HEARTBEAT: '10s',
    }),
    silentLogger(),
  );
  const scrape = async () => (await fetch(`http://127.0.0.1:${worker?.metricsPort}/metrics`)).text();
  await scrape();
  await until('the killed run to be failed by the supervisor', async () => (await records())[0]?.state === 'failed', 90_000);
  const counted = await until('both runs counted', async () => {
    const value = sample(await scrape(), 'session_janitor_sessions_deleted_total', { reason: 'expired' });
    return value === total ? value : undefined;
  });
  await sleep(3000);
  assert.equal(sample(await scrape(), 'session_janitor_sessions_deleted_total', { reason: 'expired' }), counted);
});
