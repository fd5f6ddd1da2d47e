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

test(
  'the revocation latency objective: the histogram counts each revocation once, from enqueue to completion, and a late one burns the budget',
  { timeout: 180_000 },
  async () => {
    const sessions = await insertSessions(db.pool, [
      { expiresIn: 86_400, user: 901 },
      { expiresIn: 86_400, user: 902 },
    ]);
    const [fastUser, lateUser] = [sessions[0]?.userId, sessions[1]?.userId];
    assert.ok(fastUser !== undefined && lateUser !== undefined);
    const latencyWorker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), silentLogger());
    const latencyPrometheus = await startPrometheus(`127.0.0.1:${latencyWorker.metricsPort}`);
    const boss = new PgBoss(db.url);
    await boss.start();
    try {
      const { query, alertStates } = latencyPrometheus;
      await until('a first scrape', async () => (await query('session_janitor_revocation_latency_seconds_count')).length === 1);
      const fast = await enqueueRevocation(boss, { userId: fastUser, reason: 'password-changed' });
      assert.ok(fast);
      assert.deepEqual(await waitForRevocation(boss, fast), { revoked: 1 });
      // A revocation enqueued 10 minutes ago (as if it had waited through an outage): deferred for a
      // few seconds so that its created_on can be moved back before a worker takes it.
      const late = await boss.send(QUEUES.revoke, { userId: lateUser, reason: 'password-changed' }, { startAfter: 3 });
      assert.ok(late);
      await db.pool.query(`UPDATE pgboss.job SET created_on = created_on - interval '10 minutes' WHERE name = $1 AND id = $2`, [QUEUES.revoke, late]);
      assert.deepEqual(await waitForRevocation(boss, late), { revoked: 1 });

      await until(
        'Prometheus to see both revocations',
        async () => Number((await query('sum(session_janitor_revocation_latency_seconds_count)'))[0]?.value[1]) === 2,
      );
      const within = Number((await query('sum(session_janitor_revocation_latency_seconds_bucket{le="60"})'))[0]?.value[1]);
      assert.equal(within, 1, 'one of the two within 60 s');
      const withinFiveMinutes = Number((await query('sum(session_janitor_revocation_latency_seconds_bucket{le="300"})'))[0]?.value[1]);
      assert.equal(withinFiveMinutes, 1, 'the late one took more than 5 minutes');
      const ratio = await until('the recorded 5-minute error ratio', async () => {
        const value = Number((await query('session_janitor:revocation_latency:error_ratio_rate5m'))[0]?.value[1]);
        return value > 0 && value;
      });
      assert.ok(Math.abs(ratio - 0.5) < 1e-9, `error ratio ${ratio}: half the revocations were late`);
      // 50% over every window is far more than 14.4 (1 h and 5 min) and 3 (1 day and 2 h) times the 1% budget.
      await until('both burn-rate alerts to go pending', async () => {
        const states = await alertStates();
        return ['SessionJanitorRevocationLatencyBudgetBurnFast', 'SessionJanitorRevocationLatencyBudgetBurnSlow'].every((name) =>
          ['pending', 'firing'].includes(states.get(name) ?? ''),
        );
      });
    } finally {
      await boss.stop({ graceful: false });
      await latencyPrometheus.stop();
      await latencyWorker.stop();
    }
  },
);
