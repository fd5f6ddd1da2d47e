/**
 * Dedupe keys stored before migration 4 were not scoped by role: one shaped like a scoped key
 * ('session_janitor_global_revoker/rotate-2026-12', from another producer) squatted that role's
 * key after the upgrade, and revocation_by_key reported the squatter's job as the caller's.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { createBoss, ensureQueues } from '../src/boss.ts';
import { createAuthTables } from '../src/db/dev-bootstrap.ts';
import { migrateOwnSchema, readVersion } from '../src/db/migrate.ts';
import { LATEST_VERSION } from '../src/db/sql/migrations.ts';
import { install } from '../src/install.ts';
import { closePool, databaseUrl, silentLogger, testConfig } from './helpers/database.ts';

const suffix = randomBytes(4).toString('hex');
const squatter = `sj_squatter_${suffix}`;
const revoker = `sj_rotator_${suffix}`;
const name = `sj_dedupe_${suffix}`;
let pool: pg.Pool;
let url: string;
const admin = process.env.SJ_TEST_ADMIN_URL ?? '';

before(async () => {
  assert.ok(admin);
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  for (const role of [squatter, revoker]) await client.query(`CREATE ROLE ${role} NOLOGIN`);
  await client.end();
  url = databaseUrl(admin, name);
  pool = new pg.Pool({ connectionString: url, max: 2 });
  await createAuthTables(pool);
});
after(async () => {
  await closePool(pool);
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  for (const role of [squatter, revoker]) await client.query(`DROP ROLE IF EXISTS ${role}`);
  await client.end();
});

/** fn's statements as `role` (session_user, which the functions scope keys by). */
async function as<T>(role: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(`SET SESSION AUTHORIZATION ${role}`);
    return await fn(client);
  } finally {
    await client.query('RESET SESSION AUTHORIZATION');
    client.release();
  }
}

test("a key enqueued before migration 4 squats no scoped key after the upgrade, and revocation_by_key reports only the caller's jobs", async () => {
  const config = testConfig(url);
  const log = silentLogger();
  const boss = createBoss(config, url, { role: 'tool', migrate: true }, log);
  await boss.start();
  try {
    // The release with migrations 1..3: keys stored as given.
    await migrateOwnSchema(pool, config, 3);
    await ensureQueues(boss, config);
    await pool.query(`GRANT USAGE ON SCHEMA session_janitor TO ${squatter}, ${revoker}`);
    await pool.query(`GRANT EXECUTE ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) TO ${squatter}`);
    const squatted = await as(
      squatter,
      async (c) =>
        (
          await c.query<{ id: string }>(`SELECT session_janitor.enqueue_revocation('{"userId": 1, "reason": "no-op"}', $1) AS id`, [
            `${revoker}/rotate-2026-12`,
          ])
        ).rows[0]?.id,
    );
    assert.ok(squatted);

    // The upgrade.
    await install(boss, pool, config, log, true);
    assert.equal(await readVersion(pool), LATEST_VERSION);
    await pool.query(`GRANT EXECUTE ON FUNCTION session_janitor.enqueue_global_revocation(jsonb, text), session_janitor.revocation_by_key(text) TO ${revoker}`);
    const [real, mine] = await as(revoker, async (c) => {
      const { rows } = await c.query<{ id: string | null }>(
        `SELECT session_janitor.enqueue_global_revocation('{"issuedBefore": "2026-12-01T00:00:00Z", "reason": "signing-key-rotated"}', 'rotate-2026-12') AS id`,
      );
      const { rows: jobs } = await c.query<{ job_id: string }>(`SELECT job_id FROM session_janitor.revocation_by_key('rotate-2026-12')`);
      return [rows[0]?.id ?? null, jobs.map((j) => j.job_id)] as const;
    });
    assert.ok(real !== null, 'the real revocation was not enqueued: the old key squatted it');
    assert.notEqual(real, squatted);
    assert.deepEqual(mine, [real]);
    // The squatter's job is still there, its key kept for a human, out of every lookup.
    const { rows } = await pool.query<{ singleton_key: string; singleton_on: Date | null }>(
      `SELECT singleton_key, singleton_on FROM pgboss.job WHERE id = $1`,
      [squatted],
    );
    assert.deepEqual(rows, [{ singleton_key: `(unscoped, before migration 4) ${revoker}/rotate-2026-12`, singleton_on: null }]);
  } finally {
    await boss.stop({ graceful: false });
  }
});
