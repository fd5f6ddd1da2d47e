/**
 * What an SRE sees on /metrics after a purge, a reap and a revocation: the deletion counters moved
 * by exactly the rows each deleted, and every metric the dashboard and the alert rules query is in
 * a real scrape of a running worker.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBoss } from 'pg-boss';
import { parse } from 'yaml';
import { enqueueRevocation, waitForRevocation } from '../src/client.ts';
import { startWorker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { insertSessions, silentLogger, testConfig, useTestDatabase } from './helpers/database.ts';
import { sample } from './helpers/scrape.ts';

const db = useTestDatabase();

async function completed(boss: PgBoss, queue: string, id: string): Promise<object> {
  for (let i = 0; i < 150; i++) {
    const [job] = await boss.findJobs<object>(queue, { id });
    if (job?.state === 'completed') return job.output;
    if (job?.state === 'failed') throw new Error(`${queue} job failed: ${JSON.stringify(job.output)}`);
    await sleep(200);
  }
  throw new Error(`${queue} job did not complete`);
}

/** Metric names a PromQL expression refers to (histogram series mapped to their family). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:session_janitor|process|nodejs)_[a-z0-9_]+)/g)].map((m) => (m[1] ?? '').replace(/_(bucket|sum|count)$/, ''));
}

test('the first scrape of a fresh worker holds every counter and histogram series of a known label set at 0', async () => {
  const worker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), silentLogger());
  try {
    const scrape = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    // rate() and increase() count an increment only from a sample before it: a series that is
    // born at its first increment loses that increment on every dashboard.
    for (const reason of ['expired', 'idle', 'revoked']) {
      assert.equal(sample(scrape, 'session_janitor_sessions_deleted_total', { reason }), 0, reason);
    }
    for (const kind of ['batch-timeout', 'lock-timeout', 'gauge-refresh', 'database', 'pg-boss']) {
      assert.equal(sample(scrape, 'session_janitor_errors_total', { kind }), 0, kind);
    }
    for (const task of ['purge-expired', 'reap-idle', 'revoke']) {
      assert.equal(sample(scrape, 'session_janitor_batch_duration_seconds_count', { task }), 0, task);
    }
    for (const reason of ['latency', 'duty-cycle', 'wal-rate', 'replica-lag', 'vacuum']) {
      assert.equal(sample(scrape, 'session_janitor_held_back_seconds_total', { task: 'purge-expired', reason }), 0, reason);
    }
    assert.equal(sample(scrape, 'session_janitor_held_back_seconds_total', { task: 'reap-idle', reason: 'latency' }), 0);
    const outcomes = {
      [QUEUES.purgeExpired]: ['completed', 'failed'],
      [QUEUES.reapIdle]: ['completed', 'failed'],
      [QUEUES.revoke]: ['completed', 'failed', 'rejected'],
    };
    for (const [queue, wanted] of Object.entries(outcomes)) {
      assert.equal(sample(scrape, 'session_janitor_job_duration_seconds_count', { queue }), 0, queue);
      for (const outcome of wanted) assert.equal(sample(scrape, 'session_janitor_jobs_total', { queue, outcome }), 0, `${queue} ${outcome}`);
    }
    // No series for an outcome a queue cannot have: a scheduled run has no payload to reject.
    assert.equal(sample(scrape, 'session_janitor_jobs_total', { queue: QUEUES.purgeExpired, outcome: 'rejected' }), undefined);
  } finally {
    await worker.stop();
  }
});

test('after a purge, a reap and a revocation the counters moved by exactly the rows deleted, per reason', async () => {
  const sessions = await insertSessions(db.pool, [
    // 3 expired (fresh), 2 idle (not expired), 4 of one user to revoke, 2 live.
    { expiresIn: -600 },
    { expiresIn: -60 },
    { expiresIn: -5 },
    { expiresIn: 86_400, idleFor: 7200 },
    { expiresIn: 86_400, idleFor: 10_800 },
    { expiresIn: 86_400, user: 5 },
    { expiresIn: 86_400, user: 5 },
    { expiresIn: 86_400, user: 5 },
    { expiresIn: 86_400, user: 5 },
    { expiresIn: 86_400 },
    { expiresIn: 86_400, idleFor: 60 },
  ]);
  const revokedUser = sessions[5]?.userId;
  assert.ok(revokedUser);
  const worker = await startWorker(
    testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h', JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }),
    silentLogger(),
  );
  const boss = new PgBoss(db.url);
  await boss.start();
  try {
    const purge = await boss.send(QUEUES.purgeExpired, {});
    const reap = await boss.send(QUEUES.reapIdle, {});
    assert.ok(purge && reap);
    const purged = (await completed(boss, QUEUES.purgeExpired, purge)) as { deleted: number; stoppedBy: string };
    assert.equal(purged.deleted, 3);
    assert.equal(purged.stoppedBy, 'drained');
    const reaped = (await completed(boss, QUEUES.reapIdle, reap)) as { deleted: number; stoppedBy: string };
    assert.equal(reaped.deleted, 2);
    assert.equal(reaped.stoppedBy, 'drained');
    const revocation = await enqueueRevocation(boss, { userId: revokedUser, reason: 'password-changed' });
    assert.ok(revocation);
    assert.deepEqual(await waitForRevocation(boss, revocation), { revoked: 4 });

    const scrape = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    assert.equal(sample(scrape, 'session_janitor_sessions_deleted_total', { reason: 'expired' }), 3);
    assert.equal(sample(scrape, 'session_janitor_sessions_deleted_total', { reason: 'idle' }), 2);
    assert.equal(sample(scrape, 'session_janitor_sessions_deleted_total', { reason: 'revoked' }), 4);
    for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle, QUEUES.revoke]) {
      assert.equal(sample(scrape, 'session_janitor_jobs_total', { queue, outcome: 'completed' }), 1, queue);
      assert.equal(sample(scrape, 'session_janitor_job_duration_seconds_count', { queue }), 1, queue);
    }
    for (const task of ['purge-expired', 'reap-idle', 'revoke']) {
      assert.ok((sample(scrape, 'session_janitor_batch_duration_seconds_count', { task }) ?? 0) >= 1, task);
    }
    const left = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session ORDER BY id');
    assert.deepEqual(
      left.rows.map((r) => r.id),
      [sessions[9]?.id, sessions[10]?.id],
    );

    // Every metric the dashboard and the alert rules query is in this real scrape.
    const exported = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
    const dashboard = JSON.parse(readFileSync('monitoring/grafana/session-janitor.json', 'utf8')) as { panels: Array<{ targets?: Array<{ expr?: string }> }> };
    const rules = parse(readFileSync('monitoring/prometheus/session-janitor.rules.yml', 'utf8')) as { groups: Array<{ rules: Array<{ expr: string }> }> };
    const queried = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr ?? ''))),
      ...rules.groups.flatMap((g) => g.rules.flatMap((r) => metricNames(r.expr))),
    ];
    assert.ok(queried.length > 20);
    for (const name of queried) assert.ok(exported.has(name), `${name} is queried but not exported`);
  } finally {
    await boss.stop({ graceful: false });
    await worker.stop();
  }
});
