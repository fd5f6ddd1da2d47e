/**
 * A manual run (`session-janitor purge-expired` or `reap-idle`, from a shell or the image) is recorded
 * where the scheduled runs are: it moves the cluster-wide last success and clears the stall alert,
 * and its rows reach session_janitor_sessions_deleted_total once in the cluster, through whichever
 * worker claims the record first. Two workers, both scraped by a real Prometheus that evaluates the
 * shipped rules; the manual runs are real CLI processes.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { QUEUES } from '../../src/queues.ts';
import { startWorker, type Worker } from '../../src/worker.ts';
import { createTestDatabase, insertSessions, remainingIds, silentLogger, testConfig, type TestDatabase } from '../helpers/database.ts';
import { runCli } from '../helpers/process.ts';
import { startPrometheus, type Prometheus } from '../helpers/prometheus.ts';
import { until } from '../helpers/wait.ts';

let db: TestDatabase;
const workers: Worker[] = [];
let prometheus: Prometheus | undefined;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await prometheus?.stop();
  for (const worker of workers) await worker.stop();
  await db.drop();
});

const ACTIVE = new Set(['pending', 'firing']);

test('a manual purge and reap clear the stall alert and are counted once, by one of two workers', { timeout: 180_000 }, async () => {
  const env = {
    JANITOR_IDLE_TIMEOUT: '1h',
    // No scheduled run but the one this test sends.
    JANITOR_PURGE_CRON: '0 0 1 1 *',
    JANITOR_REAP_CRON: '0 0 1 1 *',
    JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
  };
  for (let i = 0; i < 2; i++) workers.push(await startWorker(testConfig(db.url, env), silentLogger()));
  prometheus = await startPrometheus(...workers.map((w) => `127.0.0.1:${w.metricsPort}`));
  const { query, alertStates } = prometheus;

  // The scheduled purge last succeeded 20 minutes ago: the stall alert goes pending.
  const boss = new PgBoss(db.url);
  await boss.start();
  try {
    const scheduled = await boss.send(QUEUES.purgeExpired, {});
    assert.ok(scheduled);
    await until('the scheduled purge to complete', async () => (await boss.findJobs(QUEUES.purgeExpired, { id: scheduled }))[0]?.state === 'completed');
  } finally {
    await boss.stop({ graceful: false });
  }
  await db.pool.query(`UPDATE pgboss.job SET completed_on = now() - interval '20 minutes' WHERE name = $1`, [QUEUES.purgeExpired]);
  await until('the purge-stalled alert to go pending', async () => ACTIVE.has((await alertStates()).get('SessionJanitorPurgeStalled') ?? ''));

  const sessions = await insertSessions(db.pool, [
    ...Array.from({ length: 5 }, () => ({ expiresIn: -600 })),
    ...Array.from({ length: 3 }, () => ({ expiresIn: 86_400, idleFor: 7200 })),
    { expiresIn: 86_400 },
  ]);
  const purge = await runCli(['purge-expired'], { DATABASE_URL: db.url }).finished;
  assert.equal(purge.code, 0, purge.stderr);
  assert.match(purge.stdout, /^purged 5 sessions in 1 batches/m);
  const reap = await runCli(['reap-idle'], { DATABASE_URL: db.url, JANITOR_IDLE_TIMEOUT: '1h' }).finished;
  assert.equal(reap.code, 0, reap.stderr);
  assert.match(reap.stdout, /^reaped 3 idle sessions/m);
  assert.deepEqual(await remainingIds(db.pool), [sessions.at(-1)?.id]);

  // Recorded where the scheduled runs are, with the run's output.
  const { rows: recorded } = await db.pool.query<{ name: string; state: string; output: unknown }>(
    `SELECT name, state::text, output FROM pgboss.job WHERE data @> '{"manual": true}' ORDER BY created_on`,
  );
  assert.deepEqual(recorded, [
    { name: QUEUES.purgeExpired, state: 'completed', output: { deleted: 5, batches: 1, stoppedBy: 'drained' } },
    { name: QUEUES.reapIdle, state: 'completed', output: { deleted: 3, batches: 1, stoppedBy: 'drained' } },
  ]);

  // The stall alert clears, and the last success is the manual run's in every pod. Each pod
  // refreshes its gauge and is scraped in its own time, and the alert resolves as soon as one of
  // them is fresh: so wait for both pods' samples themselves, not for the alert as a sign of them.
  const lastSuccess = await until(
    "every pod's last success to be the manual run's, and the purge-stalled alert to resolve",
    async () => {
      const samples = await query('time() - session_janitor_last_success_timestamp_seconds{task="purge-expired"}');
      const fresh = samples.length === 2 && samples.every((s) => Number(s.value[1]) < 120);
      return fresh && !(await alertStates()).has('SessionJanitorPurgeStalled') && samples;
    },
    30_000,
  );
  assert.equal(lastSuccess.length, 2);
  for (const sample of lastSuccess) assert.ok(Number(sample.value[1]) < 120, `last success ${sample.value[1]} s ago`);

  // The rows, in the counter the dashboard's panels read, summed over both pods: exactly once.
  const total = async () =>
    new Map((await query('sum by (reason) (session_janitor_sessions_deleted_total)')).map((s) => [s.metric.reason ?? '', Number(s.value[1])]));
  await until('both manual runs to be counted', async () => {
    const sums = await total();
    return sums.get('expired') === 5 && sums.get('idle') === 3;
  });
  // A few more refreshes of both pods (every second) and scrapes: neither counts a run again.
  await new Promise((resolve) => setTimeout(resolve, 4000));
  assert.deepEqual(Object.fromEntries(await total()), { expired: 5, idle: 3, revoked: 0 });
  // increase() as the dashboard computes it, each pod's series evaluated at its own last sample (so
  // that nothing is extrapolated past it), then summed.
  const increases = new Map<string, number>();
  for (const { metric, value } of await query('timestamp(session_janitor_sessions_deleted_total)')) {
    const selector = `{instance="${metric.instance}", reason="${metric.reason}"}`;
    const [sample] = await query(`increase(session_janitor_sessions_deleted_total${selector}[1h])`, Number(value[1]));
    increases.set(metric.reason ?? '', (increases.get(metric.reason ?? '') ?? 0) + Number(sample?.value[1]));
  }
  assert.deepEqual(Object.fromEntries(increases), { expired: 5, idle: 3, revoked: 0 });
});
