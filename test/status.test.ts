import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PgBoss } from 'pg-boss';
import { QUEUES } from '../src/queues.ts';
import type { ClusterState } from '../src/cluster-state.ts';
import { insertSessions, useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const db = useTestDatabase();

test('status shows queue depths, the dead-letter queue, schedules and the expired backlog', async () => {
  await insertSessions(db.pool, [{ expiresIn: -7200 }, { expiresIn: -60 }, { expiresIn: 600 }]);
  const migrate = await runCli(['migrate'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
  assert.equal(migrate.code, 0, migrate.stderr);
  const boss = new PgBoss(db.url);
  await boss.start();
  await boss.send(QUEUES.deadLetter, { sourceName: QUEUES.revoke });
  await boss.send(QUEUES.revoke, { userId: 1, reason: 'test' }, { startAfter: 3600 });
  await boss.stop({ graceful: false });

  const json = await runCli(['status', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
  assert.equal(json.code, 0, json.stderr);
  const status = JSON.parse(json.stdout) as ClusterState;
  const queue = (name: string) => status.queues.find((q) => q.queue === name);
  assert.equal(queue(QUEUES.deadLetter)?.queued, 1);
  assert.equal(queue(QUEUES.revoke)?.deferred, 1);
  assert.equal(queue(QUEUES.revoke)?.queued, 0);
  assert.equal(status.expiredBacklog.sessions, 2);
  assert.ok(status.expiredBacklog.oldestWaitingSeconds >= 7200 && status.expiredBacklog.oldestWaitingSeconds < 7300);
  const purge = status.schedules.find((s) => s.queue === QUEUES.purgeExpired);
  assert.equal(purge?.cron, '*/5 * * * *');
  assert.ok(purge?.nextRun && Date.parse(purge.nextRun) > Date.now());

  const text = await runCli(['status'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^refresh-session\.dead-letter\s+1\s+0\s+0\s+0$/m);
  assert.match(text.stdout, /expired backlog: 2 sessions, the oldest waiting 2h0[01]m/);
  assert.match(text.stdout, /^idle reaper: no pass yet$/m);
  assert.equal(status.idleReaper.enabled, true);

  const reap = await runCli(['reap-idle'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
  assert.equal(reap.code, 0, reap.stderr);
  const after = await runCli(['status'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
  assert.match(after.stdout, /^idle reaper: pass 1 finished, 0 sessions reaped in this pass/m);
  // The manual reap is the queue's last run.
  assert.match(after.stdout, /^refresh-session\.reap-idle\s.*\scompleted \(manual\)\s+\{"batches":1,"deleted":0,"stoppedBy":"drained"\}/m);
  const afterJson = JSON.parse((await runCli(['status', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished).stdout) as ClusterState;
  const reapRun = afterJson.schedules.find((s) => s.queue === QUEUES.reapIdle)?.lastRun;
  assert.equal(reapRun?.manual, true);
  assert.equal(reapRun?.state, 'completed');
});
