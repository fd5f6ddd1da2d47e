/**
 * Faults injected for real: the worker killed with SIGKILL in the middle of a purge.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PgBoss } from 'pg-boss';
import { QUEUES } from '../src/queues.ts';
import { expiredAndLive, insertBulkSessions, useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

describe('faults', () => {
  const db = useTestDatabase();
  const counts = () => expiredAndLive(db.pool);

  test(
    'kill -9 mid-purge: every batch is all or nothing, the job is retried after its heartbeat lapses, another worker finishes it',
    { timeout: 120_000 },
    async () => {
      await insertBulkSessions(db.pool, 150_000, 0.99);
      const { live } = await counts();
      // The heartbeat is what brings the job back: the supervisor (every JANITOR_SUPERVISE_INTERVAL)
      // fails a job whose heartbeat is older than JANITOR_HEARTBEAT, and pg-boss retries it after the
      // retry delay. Production: 30 s + up to 60 s + 15 s; here shortened to keep the test quick.
      const env = {
        DATABASE_URL: db.url,
        JANITOR_METRICS_PORT: '0',
        JANITOR_HEARTBEAT: '10s',
        JANITOR_SUPERVISE_INTERVAL: '2s',
        JANITOR_RETRY_DELAY: '1s',
        // No scheduled tick during the test: the job under test is the only one.
        JANITOR_PURGE_CRON: '0 0 1 1 *',
      };
      const slow = { JANITOR_BATCH_SIZE: '10', JANITOR_BATCH_MIN_SIZE: '10', JANITOR_BATCH_MAX_SIZE: '10', JANITOR_PURGE_CONCURRENCY: '1' };
      const victim = runCli(['start'], { ...env, ...slow });
      const boss = new PgBoss(db.url);
      await boss.start();
      let survivor: ReturnType<typeof runCli> | undefined;
      try {
        await victim.waitFor('session-janitor worker started');
        const jobId = await boss.send(QUEUES.purgeExpired, {});
        assert.ok(jobId);
        await until('the purge to be under way', async () => (await counts()).expired < 148_000);
        victim.child.kill('SIGKILL');
        await victim.finished;
        // A batch the server was executing at the kill still commits (it learns of the lost client
        // only when it next talks to it): the kill is complete once the victim's backends are gone.
        await until('the killed worker to have no backend left', async () => {
          const { rows } = await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'session-janitor%'`,
          );
          return rows[0]?.n === 0;
        });
        const atKill = await counts();
        await sleep(500);
        assert.deepEqual(await counts(), atKill, 'nothing moves after the kill');
        assert.equal(atKill.live, live, 'no live row is gone');
        assert.equal((148_500 - atKill.expired) % 10, 0, 'whole batches of 10 only: no partial batch');
        const [orphan] = await boss.findJobs(QUEUES.purgeExpired, { id: jobId });
        assert.equal(orphan?.state, 'active', 'the killed worker still holds the job');

        survivor = runCli(['start'], env);
        await survivor.waitFor('session-janitor worker started');
        let final: { state: string; retryCount: number; output: object } | undefined;
        await until(
          'the job to be retried and completed by the new worker',
          async () => {
            const [job] = await boss.findJobs<object>(QUEUES.purgeExpired, { id: jobId });
            final = job;
            return job?.state === 'completed';
          },
          90_000,
          500,
        );
        assert.equal(final?.retryCount, 1);
        assert.equal((final?.output as { stoppedBy?: string }).stoppedBy, 'drained');
        assert.deepEqual(await counts(), { expired: 0, live });
      } finally {
        await boss.stop({ graceful: false });
        victim.child.kill('SIGKILL');
        survivor?.child.kill('SIGTERM');
        await survivor?.finished;
      }
    },
  );
});
