/**
 * A pg-boss pin change that changes pg-boss's schema version, seen from the release before it
 * (docs/deployment.md, "pg-boss upgrades"), with real packages: pg-boss 12.12 (schema version 30)
 * stands for the previous release's pg-boss and this release's pin (12.38, schema 46) for the next's.
 * The next release's migrate upgrades the schema while a pod of the previous one is running.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { buildInfo } from '../src/build-info.ts';
import { closePool, databaseUrl } from './helpers/database.ts';
import { until } from './helpers/wait.ts';

interface OldBoss {
  start(): Promise<unknown>;
  stop(options: object): Promise<void>;
  createQueue(name: string): Promise<void>;
  send(name: string, data: object): Promise<string | null>;
  work(name: string, options: object, handler: (jobs: Array<{ id: string; data: unknown }>) => Promise<unknown>): Promise<string>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}
type OldBossClass = new (options: { connectionString: string; migrate?: boolean; supervise?: boolean; schedule?: boolean }) => OldBoss;

async function freshDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = process.env.SJ_TEST_ADMIN_URL;
  assert.ok(admin, 'SJ_TEST_ADMIN_URL is unset: run with the global setup');
  const name = `sj_pgboss_${randomBytes(5).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  return {
    url: databaseUrl(admin, name),
    drop: async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

describe('a pg-boss schema upgrade under a running pod of the previous pin', { timeout: 120_000 }, () => {
  test('a running pod of the older pg-boss keeps sending, fetching and completing jobs after the upgrade; a restarted one is refused by pg-boss', async () => {
    const { url, drop } = await freshDatabase();
    const errors: string[] = [];
    const Old = ((await import('pg-boss-12-12')) as { PgBoss: OldBossClass }).PgBoss;
    const running = new Old({ connectionString: url });
    running.on('error', (error) => errors.push(error instanceof Error ? error.message : JSON.stringify(error)));
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await running.start();
      await running.createQueue('upgrade-probe');
      const handled: unknown[] = [];
      await running.work('upgrade-probe', { pollingIntervalSeconds: 0.5 }, async (jobs) => {
        for (const job of jobs) handled.push(job.data);
      });
      const version = async () => (await pool.query<{ version: number }>('SELECT version FROM pgboss.version')).rows[0]?.version;
      const before = await version();

      // The next release's migrate Job: its pg-boss upgrades the schema.
      const next = new PgBoss({ connectionString: url, supervise: false, schedule: false });
      next.on('error', () => undefined);
      await next.start();
      assert.equal(await version(), buildInfo().pgbossSchemaVersion, `upgraded from ${before}`);

      // Sent by the old pod and by the new pg-boss, after the upgrade.
      const fromOld = await running.send('upgrade-probe', { from: 'old' }).catch((error: unknown) => `send failed: ${String(error)}`);
      const fromNew = await next.send('upgrade-probe', { from: 'new' });
      await next.stop({ graceful: false });
      assert.ok(fromNew);
      // The running pod of the previous pin keeps working on the upgraded schema: its send, its fetch
      // and its completion (pg-boss 12.12 on 12.38's schema, as measured here; a later pin is checked
      // by running this test with it, docs/deployment.md).
      assert.match(fromOld ?? 'null', /^[0-9a-f-]{36}$/, fromOld ?? 'null');
      const settled = await until('both jobs to complete', async () => {
        const { rows } = await pool.query<{ state: string; from: string }>(
          `SELECT state::text, data->>'from' AS from FROM pgboss.job WHERE name = 'upgrade-probe' ORDER BY data->>'from'`,
        );
        return rows.length === 2 && rows.every((r) => r.state === 'completed') && rows;
      });
      assert.deepEqual(
        settled.map((r) => r.from),
        ['new', 'old'],
      );
      assert.deepEqual(handled.map((d) => (d as { from: string }).from).sort(), ['new', 'old']);
      assert.deepEqual(errors, [], 'the running pod of the previous pin reported errors');

      // A pod of the previous pin that restarts: pg-boss's own check refuses (it may not migrate).
      const restarted = new Old({ connectionString: url, migrate: false });
      restarted.on('error', () => undefined);
      await assert.rejects(restarted.start(), /requires migrations/);
    } finally {
      await running.stop({ graceful: false }).catch(() => undefined);
      await closePool(pool);
      await drop();
    }
  });
});
