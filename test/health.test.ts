/**
 * A database outage under a running worker: the process stays up, /healthz and /metrics keep
 * answering, /readyz says 503 while the database is gone and 200 once it is back, errors are
 * counted, and the next purge succeeds without a restart. The test stops and starts a server of
 * its own (the shared test server is not to be stopped).
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { freePort, startEmbedded } from '../src/db/embedded.ts';
import { startWorker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { insertBulkSessions, installSchema, silentLogger, testConfig } from './helpers/database.ts';
import pg from 'pg';
import { until } from './helpers/wait.ts';

const status = async (port: number, route: string) => (await fetch(`http://127.0.0.1:${port}${route}`)).status;

test('the worker rides out a database restart', { timeout: 180_000 }, async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-outage-'));
  await chmod(dataDir, 0o755);
  const port = await freePort();
  let server = await startEmbedded({ dataDir, port });
  const url = server.connectionString;
  await installSchema(url);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  await insertBulkSessions(pool, 1000, 0.5);
  await pool.end();

  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  const worker = await startWorker(testConfig(url, { JANITOR_GAUGE_REFRESH_CRON: '* * * * * *' }), silentLogger());
  try {
    await until('ready', async () => (await status(worker.metricsPort, '/readyz')) === 200);

    await server.stop();
    await until('/readyz 503 while the database is down', async () => (await status(worker.metricsPort, '/readyz')) === 503);
    assert.equal(await status(worker.metricsPort, '/healthz'), 200);
    assert.equal(await status(worker.metricsPort, '/metrics'), 200);
    const scrape = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    assert.match(scrape, /session_janitor_errors_total\{kind="database"\} [1-9]/);

    server = await startEmbedded({ dataDir, port });
    await until('/readyz 200 once the database is back', async () => (await status(worker.metricsPort, '/readyz')) === 200, 60_000);

    const boss = new PgBoss(url);
    await boss.start();
    const jobId = await boss.send(QUEUES.purgeExpired, {});
    assert.ok(jobId);
    let state = '';
    await until(
      'the purge after the outage',
      async () => {
        const [job] = await boss.findJobs(QUEUES.purgeExpired, { id: jobId });
        state = job?.state ?? '';
        return state === 'completed' || state === 'failed';
      },
      60_000,
    );
    await boss.stop({ graceful: false });
    assert.equal(state, 'completed');
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await worker.stop();
    await server.stop();
  }
});
