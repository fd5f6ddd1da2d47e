/**
 * The metrics as a real Prometheus computes them: a Prometheus server (Debian's prometheus package,
 * beside promtool) scrapes a real worker on a real database every second and evaluates the shipped
 * alert rules, unchanged, every second. The test deletes rows for each reason and drives the alerts'
 * conditions, then asks Prometheus what an SRE's dashboard and pager would see.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { enqueueRevocation, waitForRevocation } from '../../src/client.ts';
import { startWorker, type Worker } from '../../src/worker.ts';
import { QUEUES } from '../../src/queues.ts';
import { createTestDatabase, insertSessions, silentLogger, testConfig, type TestDatabase } from '../helpers/database.ts';
import { startPrometheus, type Prometheus } from '../helpers/prometheus.ts';
import { until } from '../helpers/wait.ts';

let db: TestDatabase;
let worker: Worker | undefined;
let prometheus: Prometheus | undefined;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await prometheus?.stop();
  await worker?.stop();
  await db.drop();
});

test('increase() counts exactly the rows deleted, reason by reason, and the alerts go pending as their conditions arise', { timeout: 180_000 }, async () => {
  const sessions = await insertSessions(db.pool, [
    ...Array.from({ length: 5 }, () => ({ expiresIn: -600 })),
    ...Array.from({ length: 3 }, () => ({ expiresIn: 86_400, idleFor: 7200 })),
    ...Array.from({ length: 4 }, () => ({ expiresIn: 86_400, user: 8 })),
    { expiresIn: 86_400 },
  ]);
  const revokedUser = sessions[8]?.userId;
  assert.ok(revokedUser);
  worker = await startWorker(
    testConfig(db.url, {
      JANITOR_IDLE_TIMEOUT: '1h',
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
      JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      // pg-boss refreshes the queue counts behind session_janitor_queue_jobs at this interval.
      JANITOR_SUPERVISE_INTERVAL: '1s',
    }),
    silentLogger(),
  );
  prometheus = await startPrometheus(`127.0.0.1:${worker.metricsPort}`);
  const { query, alertStates } = prometheus;
  // Prometheus has the series at 0 before anything is deleted.
  await until('a first scrape', async () => (await query('session_janitor_sessions_deleted_total')).length === 3);

  const boss = new PgBoss(db.url);
  await boss.start();
  try {
    const purge = await boss.send(QUEUES.purgeExpired, {});
    const reap = await boss.send(QUEUES.reapIdle, {});
    assert.ok(purge && reap);
    const revocation = await enqueueRevocation(boss, { userId: revokedUser, reason: 'password-changed' });
    assert.ok(revocation);
    assert.deepEqual(await waitForRevocation(boss, revocation), { revoked: 4 });
    await until('the purge and the reap to complete', async () => {
      const jobs = [...(await boss.findJobs(QUEUES.purgeExpired, { id: purge })), ...(await boss.findJobs(QUEUES.reapIdle, { id: reap }))];
      return jobs.length === 2 && jobs.every((job) => job.state === 'completed');
    });
    // A dead letter: an invalid request goes there at once.
    await boss.send(QUEUES.revoke, { userId: 'not-a-number', reason: 'test' });
  } finally {
    await boss.stop({ graceful: false });
  }
  const left = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session');
  assert.equal(left.rows[0]?.n, 1, 'only the live session is left');

  // What the dashboard's "sessions deleted" panel computes, at the time of a scrape that saw all of it.
  const totals = await until('a scrape after the deletes', async () => {
    const raw = await query('session_janitor_sessions_deleted_total');
    return raw.reduce((sum, s) => sum + Number(s.value[1]), 0) === 12 && raw;
  });
  // increase() extrapolates to the end of its window from the last sample: evaluated at that sample's
  // own time there is nothing to extrapolate, and the series born at 0 stop it at the start.
  const at = Number((await query('max(timestamp(session_janitor_sessions_deleted_total))'))[0]?.value[1]);
  assert.ok(totals.length === 3 && at > 0);
  const increases = new Map((await query('increase(session_janitor_sessions_deleted_total[1h])', at)).map((s) => [s.metric.reason, Number(s.value[1])]));
  assert.deepEqual(Object.fromEntries(increases), { expired: 5, idle: 3, revoked: 4 });

  // A purge stalled: its last success was 20 minutes ago, as far as the job history says.
  await db.pool.query(`UPDATE pgboss.job SET completed_on = now() - interval '20 minutes' WHERE name = $1`, [QUEUES.purgeExpired]);
  const active = new Set(['pending', 'firing']);
  await until('the purge-stalled and dead-letter alerts to go pending', async () => {
    const states = await alertStates();
    return active.has(states.get('SessionJanitorPurgeStalled') ?? '') && active.has(states.get('SessionJanitorDeadLetterNotEmpty') ?? '') && states;
  });

  // The database becomes unusable for every pod (here: the sessions table is gone), though the pod is up.
  await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_away');
  try {
    await until('the database-unusable alert to go pending', async () => active.has((await alertStates()).get('SessionJanitorDatabaseUnusable') ?? ''));
  } finally {
    await db.pool.query('ALTER TABLE auth.refresh_session_away RENAME TO refresh_session');
  }

  // The last pod goes away: nothing improved, so neither alert resolves, and the no-worker alert
  // goes pending.
  await worker.stop();
  worker = undefined;
  await until('the no-worker alert to go pending', async () => active.has((await alertStates()).get('SessionJanitorNoWorkerUp') ?? ''));
  const afterScrapesFailed = await until('a few evaluations without the pod', async () => {
    const up = await query('up{job="session-janitor"} == 0');
    return up.length === 1 && (await query('session_janitor_last_success_timestamp_seconds')).length === 0 && (await alertStates());
  });
  assert.ok(active.has(afterScrapesFailed.get('SessionJanitorPurgeStalled') ?? ''), 'the purge-stalled alert resolved when the pod went away');
  assert.ok(active.has(afterScrapesFailed.get('SessionJanitorDeadLetterNotEmpty') ?? ''), 'the dead-letter alert resolved when the pod went away');
});
