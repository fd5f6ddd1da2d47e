/**
 * What "a release works against this database" means in the release tests (test/releases.test.ts):
 * its worker, started as Kubernetes starts it (the CLI, JANITOR_MIGRATE=false), purges an expired
 * session, reaps an idle one and carries out a revocation enqueued through
 * session_janitor.enqueue_revocation, and leaves every other session alone.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { createBoss } from '../../src/boss.ts';
import { QUEUES } from '../../src/queues.ts';
import { closePool, insertSessions, silentLogger, testConfig } from './database.ts';
import { runCli } from './process.ts';
import { until } from './wait.ts';

export const NO_SCHEDULE = { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' } as const;

export interface WorkerRun {
  /** Everything the worker logged (JSON lines on stdout, one-line failures on stderr). */
  readonly output: string;
}

/** Starts the worker of `cli` (this checkout's by default) against url and proves it works; stops it. */
export async function proveWorkerWorks(url: string, options: { cli?: string; env?: Record<string, string> } = {}): Promise<WorkerRun> {
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    const [expired, idle, revokedA, revokedB, live] = await insertSessions(pool, [
      { expiresIn: -3600, user: 0 },
      { expiresIn: 90 * 86_400, idleFor: 40 * 86_400, user: 1 },
      { expiresIn: 86_400, user: 2 },
      { expiresIn: 86_400, user: 2 },
      { expiresIn: 86_400, user: 3 },
    ]);
    assert.ok(expired && idle && revokedA && revokedB && live);
    const worker = runCli(
      ['start'],
      {
        DATABASE_URL: url,
        JANITOR_MIGRATE: 'false',
        JANITOR_METRICS_PORT: '0',
        JANITOR_METRICS_HOST: '127.0.0.1',
        JANITOR_IDLE_TIMEOUT: '30d',
        ...NO_SCHEDULE,
        ...options.env,
      },
      options.cli === undefined ? {} : { cli: options.cli },
    );
    try {
      await worker.waitFor('session-janitor worker started', 60_000);
      const sender = createBoss(testConfig(url), url, { role: 'tool', migrate: false }, silentLogger());
      await sender.start();
      let ids: Array<string | null>;
      try {
        ids = [await sender.send(QUEUES.purgeExpired, {}), await sender.send(QUEUES.reapIdle, {})];
      } finally {
        await sender.stop({ graceful: false });
      }
      const revoke = await pool.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [
        JSON.stringify({ userId: revokedA.userId, reason: 'release-test', requestedBy: 'release-proof.ts' }),
      ]);
      ids.push(revoke.rows[0]?.id ?? null);
      for (const id of ids) {
        assert.ok(id, 'a job was not enqueued');
        const job = await until(
          `job ${id} to end`,
          async () => {
            const row = (
              await pool.query<{ name: string; state: string; output: unknown }>('SELECT name, state::text, output FROM pgboss.job WHERE id = $1', [id])
            ).rows[0];
            return ['completed', 'failed', 'cancelled'].includes(row?.state ?? '') && row;
          },
          60_000,
        );
        assert.equal(job.state, 'completed', `${job.name}: ${JSON.stringify(job.output)}\n${worker.output()}`);
      }
      const left = await pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE id = ANY($1) ORDER BY id', [
        [expired, idle, revokedA, revokedB, live].map((s) => s.id),
      ]);
      assert.deepEqual(
        left.rows.map((r) => r.id),
        [live.id],
        'the expired, the idle and the revoked user sessions are gone, the live one stays',
      );
    } finally {
      worker.child.kill('SIGTERM');
    }
    const finished = await worker.finished;
    assert.equal(finished.code, 0, `the worker did not stop cleanly:\n${finished.stdout}${finished.stderr}`);
    return { output: finished.stdout + finished.stderr };
  } finally {
    // Closed, not only ended: the caller drops the database WITH (FORCE) next (closePool says why).
    await closePool(pool);
  }
}
