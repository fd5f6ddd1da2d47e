/**
 * Pause and resume (src/tasks/pause.ts): the command line, `status`, the gauges, and three worker
 * replicas whose purge in flight stops within one batch of the pause, while a revocation still runs.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { enqueueRevocation, waitForRevocation } from '../src/client.ts';
import type { ClusterState } from '../src/cluster-state.ts';
import { refreshPauses } from '../src/gauges.ts';
import { createMetrics } from '../src/metrics.ts';
import { QUEUES } from '../src/queues.ts';
import { pauseTasks, readPauses } from '../src/tasks/pause.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { insertBulkSessions, insertSessions, silentLogger, testConfig, useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

const count = async (pool: pg.Pool, where = 'true') =>
  (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM auth.refresh_session WHERE ${where}`)).rows[0]?.n ?? -1;

describe('pause and resume', () => {
  const db = useTestDatabase();
  const env = () => ({ DATABASE_URL: db.url, LOG_LEVEL: 'warn' });

  test('bad requests are refused in one line (exit 64) and pause nothing', async () => {
    for (const [args, message] of [
      [['confirm', 'revoke', '--reason', 'x'], /unknown task "revoke": one of purge-expired, reap-idle, all/],
      [['pause', 'purge', '--for', '1m', '--reason', 'x'], /unknown task "purge": one of purge-expired, reap-idle, revoke, all/],
      [['pause', 'all', '--reason', 'x'], /--for <duration>/],
      [['pause', 'all', '--for', '25h', '--reason', 'x'], /--for must be a duration from 1s to 24h/],
      [['pause', 'all', '--for', 'soon', '--reason', 'x'], /--for must be a duration from 1s to 24h/],
      [['pause', 'all', '--for', '1m', '--reason', '  '], /--reason is required/],
    ] as const) {
      const result = await runCli(args, env()).finished;
      assert.equal(result.code, 64, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
    }
    const { rows } = await db.pool.query('SELECT * FROM session_janitor.pause');
    assert.deepEqual(rows, []);
  });

  test('pause all: status and the gauges say who, why, since and until; a manual purge deletes nothing; a renewal keeps since; resume ends it', async () => {
    await insertSessions(db.pool, [{ expiresIn: -7200 }, { expiresIn: -60 }, { expiresIn: 600 }]);
    const role = (await db.pool.query<{ role: string }>('SELECT current_user AS role')).rows[0]?.role;

    const paused = await runCli(['pause', 'all', '--for', '5m', '--reason', 'replica lag incident'], env()).finished;
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /^paused purge-expired until \S+ \(since \S+, by \S+, renewals 0\): replica lag incident$/m);
    assert.match(paused.stdout, /^paused reap-idle until /m);

    const status = JSON.parse((await runCli(['status', '--json'], env()).finished).stdout) as ClusterState;
    assert.deepEqual(
      status.pauses.map((p) => [p.task, p.pausedBy, p.reason, p.renewals]),
      [
        ['purge-expired', role, 'replica lag incident', 0],
        ['reap-idle', role, 'replica lag incident', 0],
      ],
    );
    const purgePause = status.pauses[0];
    assert.ok(purgePause);
    assert.equal(Date.parse(purgePause.until) - Date.parse(purgePause.since), 300_000);
    const text = (await runCli(['status'], env()).finished).stdout;
    assert.match(text, /^PAUSED\s+BY\s+SINCE\s+UNTIL\s+RENEWALS\s+REASON$/m);
    assert.match(text, /^purge-expired\s+\S+\s+\S+\s+\S+\s+0\s+replica lag incident$/m);

    const metrics = createMetrics();
    await refreshPauses({ pool: db.pool, metrics });
    const gauge = async (name: string, task: string) =>
      (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.task === task)?.value;
    assert.equal(await gauge('session_janitor_paused_until_timestamp_seconds', 'purge-expired'), Date.parse(purgePause.until) / 1000);
    assert.equal(await gauge('session_janitor_paused_since_timestamp_seconds', 'reap-idle'), Date.parse(purgePause.since) / 1000);
    assert.equal(await gauge('session_janitor_paused_until_timestamp_seconds', 'revoke'), 0, '`pause all` leaves the revocations running');

    const purge = await runCli(['purge-expired'], env()).finished;
    assert.equal(purge.code, 0, purge.stderr);
    assert.match(purge.stdout, /^purged 0 sessions in 0 batches, .* stopped by: paused$/m);
    assert.equal(await count(db.pool), 3);

    // Renewed while in force: since stays, renewals counts it (the alert's input).
    const renewed = await runCli(['pause', 'purge-expired', '--for', '10m', '--reason', 'still lagging'], env()).finished;
    assert.equal(renewed.code, 0, renewed.stderr);
    await refreshPauses({ pool: db.pool, metrics });
    assert.equal(await gauge('session_janitor_pause_renewals', 'purge-expired'), 1);
    assert.equal(await gauge('session_janitor_paused_since_timestamp_seconds', 'purge-expired'), Date.parse(purgePause.since) / 1000);

    const resumed = await runCli(['resume', 'reap-idle'], env()).finished;
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /^resumed reap-idle \(was paused reap-idle until /m);

    const all = await runCli(['resume', 'all'], env()).finished;
    assert.equal(all.code, 0, all.stderr);
    assert.match(
      all.stdout,
      /^resumed purge-expired \(was paused purge-expired until \S+ \(since \S+, by \S+, renewals 1\): still lagging\)\nreap-idle was not paused\n$/,
    );
    await refreshPauses({ pool: db.pool, metrics });
    assert.equal(await gauge('session_janitor_paused_until_timestamp_seconds', 'purge-expired'), 0);
    assert.equal(await gauge('session_janitor_pause_renewals', 'purge-expired'), 0);
    const after = await runCli(['purge-expired'], env()).finished;
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /^purged 2 sessions in \d+ batches, .* stopped by: drained$/m);
    assert.equal(await count(db.pool), 1);
    assert.deepEqual(await readPauses(db.pool), []);
  });

  test("an extra table's purge (JANITOR_PURGE_TABLES) obeys the purge's pause", async () => {
    await db.pool.query(
      `CREATE TABLE auth.one_time_token (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, expires_at timestamptz NOT NULL);
       CREATE INDEX ON auth.one_time_token (expires_at);
       INSERT INTO auth.one_time_token (expires_at) VALUES (now() - interval '1 hour'), (now() - interval '1 minute'), (now() + interval '1 hour')`,
    );
    const tokens = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.one_time_token')).rows[0]?.n;
    const withTable = { ...env(), JANITOR_PURGE_TABLES: 'auth.one_time_token:expires_at' };
    const purgeTable = () => runCli(['purge-expired', '--table', 'auth.one_time_token'], withTable).finished;

    assert.equal((await runCli(['pause', 'purge-expired', '--for', '5m', '--reason', 'table test'], env()).finished).code, 0);
    const paused = await purgeTable();
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /stopped by: paused/);
    assert.equal(await tokens(), 3);

    assert.equal((await runCli(['resume', 'purge-expired'], env()).finished).code, 0);
    const resumed = await purgeTable();
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /stopped by: drained/);
    assert.equal(await tokens(), 1);
  });

  test(
    'revocations: `pause all` leaves them running; `pause revoke` holds them in the queue, spending no retry, until `resume revoke`',
    { timeout: 120_000 },
    async () => {
      await db.pool.query('DELETE FROM auth.refresh_session');
      await insertSessions(db.pool, [
        { expiresIn: 3600, user: 0 },
        { expiresIn: 3600, user: 0 },
        { expiresIn: 3600, user: 1 },
      ]);
      const [first, second] = (await db.pool.query<{ user_id: number }>('SELECT DISTINCT user_id FROM auth.refresh_session ORDER BY 1')).rows.map(
        (r) => r.user_id,
      );
      assert.ok(first !== undefined && second !== undefined);
      const worker = runCli(['start'], {
        ...env(),
        LOG_LEVEL: 'info',
        JANITOR_METRICS_PORT: '0',
        JANITOR_METRICS_HOST: '127.0.0.1',
        JANITOR_PURGE_CRON: '0 0 1 1 *',
        JANITOR_REAP_CRON: '0 0 1 1 *',
      });
      const boss = new PgBoss(db.url);
      await boss.start();
      try {
        await worker.waitFor('session-janitor worker started', 60_000);
        assert.equal((await runCli(['pause', 'all', '--for', '1m', '--reason', 'incident'], env()).finished).code, 0);
        const during = await enqueueRevocation(boss, { userId: first, reason: 'compromised' });
        assert.ok(during);
        assert.deepEqual(await waitForRevocation(boss, during), { revoked: 2 }, '`pause all` does not pause the revocations');

        const paused = await runCli(['pause', 'revoke', '--for', '1m', '--reason', 'revocations overload the database'], env()).finished;
        assert.equal(paused.code, 0, paused.stderr);
        assert.match(paused.stdout, /^paused revoke until \S+ \(since \S+, by \S+, renewals 0\): revocations overload the database$/m);
        await worker.waitFor('revocations paused', 30_000);
        const held = await enqueueRevocation(boss, { userId: second, reason: 'compromised' });
        assert.ok(held);
        // Six polls of the revoke consumer (every 0.5 s): none takes it.
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const [queued] = await boss.findJobs(QUEUES.revoke, { id: held });
        assert.equal(queued?.state, 'created');
        assert.equal(queued.retryCount, 0);
        assert.equal((await db.pool.query('SELECT 1 FROM auth.refresh_session WHERE user_id = $1', [second])).rowCount, 1);
        const status = JSON.parse((await runCli(['status', '--json'], env()).finished).stdout) as ClusterState;
        assert.deepEqual(status.pauses.map((p) => p.task).sort(), ['purge-expired', 'reap-idle', 'revoke']);

        const resumed = await runCli(['resume', 'revoke'], env()).finished;
        assert.equal(resumed.code, 0, resumed.stderr);
        assert.deepEqual(await waitForRevocation(boss, held), { revoked: 1 });
        assert.match(worker.output(), /revocations resumed/);
      } finally {
        worker.child.kill('SIGTERM');
        await worker.finished;
        await boss.stop();
        await runCli(['resume', 'all'], env()).finished;
      }
    },
  );

  test('a role with the producer rights only cannot pause', async () => {
    await db.pool.query(`DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pause_test_producer') THEN CREATE ROLE pause_test_producer LOGIN PASSWORD 'pw'; END IF;
      END $$`);
    await db.pool.query('GRANT USAGE ON SCHEMA session_janitor, auth TO pause_test_producer');
    await db.pool.query('GRANT SELECT ON auth.refresh_session TO pause_test_producer');
    const url = new URL(db.url);
    url.username = 'pause_test_producer';
    url.password = 'pw';
    const result = await runCli(['pause', 'all', '--for', '1m', '--reason', 'x'], { DATABASE_URL: url.toString(), LOG_LEVEL: 'warn' }).finished;
    // The command stops at its schema check already (no right on pgboss); the table itself refuses too.
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /permission denied/);
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      await assert.rejects(pauseTasks(client, ['purge-expired'], 60, 'x'), { code: '42501', message: 'permission denied for table pause' });
    } finally {
      await client.end();
    }
    assert.equal((await db.pool.query('SELECT 1 FROM session_janitor.pause')).rowCount, 0);
  });

  test(
    'three replicas: a pause stops the purge in flight within one batch, a revocation still completes, the purge resumes after the pause',
    { timeout: 120_000 },
    async () => {
      await db.pool.query('DELETE FROM auth.refresh_session');
      await insertBulkSessions(db.pool, 30_000, 2 / 3); // 20,000 expired, 10,000 live
      const BATCH = 10;
      const config = testConfig(db.url, {
        JANITOR_BATCH_SIZE: String(BATCH),
        JANITOR_BATCH_MIN_SIZE: String(BATCH),
        JANITOR_BATCH_MAX_SIZE: String(BATCH),
        JANITOR_PURGE_CRON: '0 0 1 1 *',
        JANITOR_REAP_CRON: '0 0 1 1 *',
        JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      });
      const workers: Worker[] = [];
      const boss = new PgBoss(db.url);
      await boss.start();
      try {
        for (let i = 0; i < 3; i++) workers.push(await startWorker(config, silentLogger()));
        const job = await boss.send(QUEUES.purgeExpired, {});
        assert.ok(job);
        await until('the purge to be under way', async () => (await count(db.pool, 'expires_at < now()')) < 19_500, 60_000, 20);

        const paused = await runCli(['pause', 'purge-expired', '--for', '6s', '--reason', 'load test'], env()).finished;
        assert.equal(paused.code, 0, paused.stderr);
        const leftAtPause = await count(db.pool, 'expires_at < now()');
        const output = await until('the purge job to stop', async () => {
          const [found] = await boss.findJobs<object>(QUEUES.purgeExpired, { id: job });
          return found?.state === 'completed' && (found.output as { deleted: number; stoppedBy: string });
        });
        assert.equal(output.stoppedBy, 'paused');
        // At most the batch in flight when the pause committed went after it.
        const leftAfter = await count(db.pool, 'expires_at < now()');
        assert.ok(leftAtPause - leftAfter <= BATCH, `${leftAtPause - leftAfter} rows went after the pause`);
        assert.ok(leftAfter > 0);

        // Every replica's gauge says it; a revocation enqueued meanwhile completes.
        for (const worker of workers) {
          const pausedUntil = await until('the pause gauge of every replica', async () => {
            const value = (await worker.metrics.pausedUntil.get()).values.find((v) => v.labels.task === 'purge-expired')?.value;
            return value !== undefined && value > 0 && value;
          });
          assert.ok(pausedUntil > Date.now() / 1000 - 1);
        }
        const user = (
          await db.pool.query<{ user_id: number; n: number; live: number }>(
            'SELECT user_id, count(*)::int AS n, count(*) FILTER (WHERE expires_at >= now())::int AS live FROM auth.refresh_session GROUP BY 1 ORDER BY 1 LIMIT 1',
          )
        ).rows[0];
        assert.ok(user && user.live > 0);
        const revocation = await enqueueRevocation(boss, { userId: user.user_id, reason: 'compromised' });
        assert.ok(revocation);
        assert.deepEqual(await waitForRevocation(boss, revocation), { revoked: user.n });

        // A run during the pause deletes nothing; after it, the purge drains.
        await until('the pause to end', async () => (await db.pool.query('SELECT 1 FROM session_janitor.pause WHERE until > now()')).rowCount === 0, 30_000);
        const second = await boss.send(QUEUES.purgeExpired, {});
        assert.ok(second);
        const drained = await until(
          'the purge to drain',
          async () => {
            const [found] = await boss.findJobs<object>(QUEUES.purgeExpired, { id: second });
            return found?.state === 'completed' && (found.output as { stoppedBy: string });
          },
          90_000,
        );
        assert.equal(drained.stoppedBy, 'drained');
        assert.equal(await count(db.pool, 'expires_at < now()'), 0);
        // Exactly the live rows of every user but the revoked one remain.
        assert.equal(await count(db.pool), 10_000 - user.live);
        assert.equal(await count(db.pool, `user_id = ${user.user_id}`), 0);
      } finally {
        await boss.stop({ graceful: false });
        for (const worker of workers) await worker.stop();
      }
    },
  );
});
