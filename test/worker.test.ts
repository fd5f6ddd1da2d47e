/**
 * The worker end to end: pg-boss consuming the purge queue, the HTTP endpoints, the metrics moving
 * by exactly the rows deleted, one purge per schedule tick across replicas, and SIGTERM.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { startWorker, type Worker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { insertBulkSessions, silentLogger, testConfig, type TestDatabase, useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { sample } from './helpers/scrape.ts';
import { until } from './helpers/wait.ts';

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

const count = async (db: TestDatabase, where = 'true') =>
  (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM auth.refresh_session WHERE ${where}`)).rows[0]?.n ?? -1;

describe('the worker', () => {
  const db = useTestDatabase();

  test('a purge job deletes the expired rows; /metrics, /healthz and /readyz tell the truth', async () => {
    await insertBulkSessions(db.pool, 3000, 0.4);
    const worker = await startWorker(testConfig(db.url, { JANITOR_GAUGE_REFRESH_CRON: '* * * * * *' }), silentLogger());
    try {
      assert.equal((await get(worker.metricsPort, '/healthz')).status, 200);
      assert.equal((await get(worker.metricsPort, '/readyz')).status, 200);
      const before = await until('the backlog gauge', async () => {
        const scrape = (await get(worker.metricsPort, '/metrics')).body;
        return sample(scrape, 'session_janitor_expired_backlog_sessions') === 1200 && scrape;
      });
      assert.ok((sample(before, 'session_janitor_expired_backlog_oldest_seconds') ?? 0) > 60);

      const boss = new PgBoss(db.url);
      await boss.start();
      const jobId = await boss.send(QUEUES.purgeExpired, {});
      assert.ok(jobId);
      const job = await until('the purge job to complete', async () => {
        const [found] = await boss.findJobs<object>(QUEUES.purgeExpired, { id: jobId });
        return found?.state === 'completed' && found;
      });
      await boss.stop({ graceful: false });
      const output = job.output as { deleted: number; batches: number; stoppedBy: string };
      assert.equal(output.deleted, 1200);
      assert.equal(output.stoppedBy, 'drained');
      assert.ok(output.batches >= 1);
      assert.equal(await count(db, 'expires_at < now()'), 0);
      assert.equal(await count(db), 1800);

      // The backlog and the last success are refreshed by separate queries of one refresh: wait for
      // a scrape that has both from after the purge, not for one as a sign of the other.
      const scrape = await until('the gauges after the purge', async () => {
        const text = (await get(worker.metricsPort, '/metrics')).body;
        const refreshed =
          sample(text, 'session_janitor_expired_backlog_sessions') === 0 &&
          sample(text, 'session_janitor_last_success_timestamp_seconds', { task: 'purge-expired' }) !== undefined;
        return refreshed && text;
      });
      assert.equal(sample(scrape, 'session_janitor_sessions_deleted_total', { reason: 'expired' }), 1200);
      assert.equal(sample(scrape, 'session_janitor_jobs_total', { queue: QUEUES.purgeExpired, outcome: 'completed' }), 1);
      assert.equal(sample(scrape, 'session_janitor_expired_backlog_oldest_seconds'), 0);
      assert.equal(sample(scrape, 'session_janitor_batch_duration_seconds_count', { task: 'purge-expired' }), output.batches);
      const lastSuccess = sample(scrape, 'session_janitor_last_success_timestamp_seconds', { task: 'purge-expired' });
      assert.ok(lastSuccess !== undefined && Math.abs(lastSuccess - Date.now() / 1000) < 60, `last success ${lastSuccess}`);
    } finally {
      await worker.stop();
    }
    assert.equal((await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`).catch(() => null))?.status ?? 'closed', 'closed');
  });

  test('two workers on one schedule produce one purge per tick', { timeout: 120_000 }, async () => {
    await db.pool.query(`DELETE FROM pgboss.job WHERE name = $1`, [QUEUES.purgeExpired]);
    // Both evaluate the schedule every second (pg-boss's cron pass, claimed through the database),
    // so every pass finds the minute's occurrence due and sends it again: dozens of sends a minute
    // that pg-boss must keep to one job.
    const env = { JANITOR_PURGE_CRON: '* * * * *', JANITOR_SCHEDULE_CHECK_INTERVAL: '1s' };
    const workers: Worker[] = [];
    try {
      workers.push(await startWorker(testConfig(db.url, env), silentLogger()));
      workers.push(await startWorker(testConfig(db.url, env), silentLogger()));
      const { rows: started } = await db.pool.query<{ now: Date }>('SELECT now()');
      const jobs = () =>
        db.pool.query<{ id: string; created_on: Date; state: string }>(`SELECT id, created_on, state FROM pgboss.job WHERE name = $1`, [QUEUES.purgeExpired]);
      await until('the first scheduled purge', async () => (await jobs()).rows.length > 0, 60_000);
      // Ten seconds of passes after both workers were up (the pass stamps pgboss.version.cron_on), by
      // either of them: each sent the occurrence again.
      await until(
        'ten seconds of schedule passes after both workers started',
        async () =>
          (await db.pool.query<{ done: boolean }>(`SELECT cron_on >= $1::timestamptz + interval '10 seconds' AS done FROM pgboss.version`, [started[0]?.now]))
            .rows[0]?.done,
        60_000,
      );
      const { rows } = await jobs();
      const minutes = new Set(rows.map((r) => Math.floor(r.created_on.getTime() / 60_000)));
      assert.equal(rows.length, minutes.size, `more than one job in a minute: ${JSON.stringify(rows)}`);
      assert.ok(rows.length >= 1);
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  });

  test('SIGTERM during a long purge: exit 0 within the grace period, the job completes as stopped by shutdown', { timeout: 120_000 }, async () => {
    await db.pool.query('TRUNCATE auth.refresh_session');
    // The previous test's every-minute schedule, and a tick of it still queued: a worker starting
    // with it would queue (or find) a purge before the one sent below, which the queue then refuses.
    await db.pool.query('DELETE FROM pgboss.schedule WHERE name = $1', [QUEUES.purgeExpired]);
    await db.pool.query('DELETE FROM pgboss.job WHERE name = $1', [QUEUES.purgeExpired]);
    await insertBulkSessions(db.pool, 200_000, 1);
    const child = runCli(['start'], {
      DATABASE_URL: db.url,
      JANITOR_METRICS_PORT: '0',
      JANITOR_BATCH_SIZE: '10',
      JANITOR_BATCH_MIN_SIZE: '10',
      JANITOR_BATCH_MAX_SIZE: '10',
      JANITOR_PURGE_CONCURRENCY: '1',
      JANITOR_SHUTDOWN_TIMEOUT: '25s',
      // No scheduled tick during the test: the job under test is the only one.
      JANITOR_PURGE_CRON: '0 0 1 1 *',
    });
    try {
      await child.waitFor('session-janitor worker started');
      const boss = new PgBoss(db.url);
      await boss.start();
      const jobId = await boss.send(QUEUES.purgeExpired, {});
      assert.ok(jobId);
      await until('the purge to be under way', async () => (await count(db)) < 199_000, 30_000, 100);
      const sent = Date.now();
      child.child.kill('SIGTERM');
      const result = await child.finished;
      const seconds = (Date.now() - sent) / 1000;
      assert.equal(result.code, 0, child.output());
      assert.ok(seconds < 30, `took ${seconds}s`);
      const [job] = await boss.findJobs<object>(QUEUES.purgeExpired, { id: jobId });
      await boss.stop({ graceful: false });
      assert.equal(job?.state, 'completed');
      const output = job?.output as { deleted: number; stoppedBy: string };
      assert.equal(output.stoppedBy, 'shutdown');
      assert.equal(await count(db), 200_000 - output.deleted, 'every deleted row is accounted for: no partial batch');
      assert.ok(output.deleted % 10 === 0, 'whole batches only');
    } finally {
      if (child.child.exitCode === null) child.child.kill('SIGKILL');
    }
  });
});
