/**
 * The latency guard's probe on a real server: a probe that would wait for another transaction's lock
 * on its row measures that lock, not a commit (the baseline was learnt as the lock timeout and the
 * guard went inert in silence); and a commit that hangs (a synchronous standby that does not answer,
 * which statement_timeout does not bound) must not hang the probe.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { HeldBack } from '../../src/tasks/held-back.ts';
import { commitLatencyProbe, createLatencyGuard, RunProbeConnection } from '../../src/tasks/latency-probe.ts';
import { createTestDatabase, taskContext, testConfig, type TestDatabase } from '../helpers/database.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await db.drop();
});

test('a probe whose row is locked does not time the lock: it is counted, and the guard learns its baseline on another row', async () => {
  const ctx = taskContext(testConfig(db.url, { JANITOR_LOCK_TIMEOUT: '3s' }), 3);
  const holder = new pg.Client({ connectionString: db.url });
  await holder.connect();
  try {
    // Every probe of the pool's first connection would go to its backend's slot: lock that row.
    const probeClient = await ctx.pool.connect();
    const { rows } = await probeClient.query<{ slot: number }>('SELECT (pg_backend_pid() % 1024)::int AS slot');
    probeClient.release();
    const slot = rows[0]?.slot;
    assert.ok(slot !== undefined);
    await db.pool.query(`INSERT INTO session_janitor.latency_probe (slot, probed_at) VALUES ($1, '2000-01-01')`, [slot]);
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM session_janitor.latency_probe WHERE slot = $1 FOR SHARE', [slot]);

    const heldBack = new HeldBack(ctx.metrics, 'purge-expired');
    const guard = createLatencyGuard(ctx, 'purge-expired', heldBack, new AbortController().signal);
    assert.ok(guard);
    await guard.start();
    await guard.finish();

    // The probes wrote another row: none waited for the lock.
    const { rows: written } = await db.pool.query<{ slot: number }>(
      `SELECT slot FROM session_janitor.latency_probe WHERE probed_at > now() - interval '1 hour' ORDER BY slot`,
    );
    assert.equal(written.length, 1);
    assert.notEqual(written[0]?.slot, slot);
    const waits = await ctx.metrics.latencyProbeLockWaits.get();
    assert.equal(waits.values.find((v) => v.labels.task === 'purge-expired')?.value, 1);
    // Still guarding: a baseline from probes that wrote another row, not from waits on the lock.
    assert.notEqual(guard.stats.baselineMs, null);
  } finally {
    await holder.end();
    await ctx.pool.end();
  }
});

test('a probe whose commit hangs past the bound returns the bound, and the next probe runs on another connection', { timeout: 60_000 }, async () => {
  // A commit that does not answer in time, as with a synchronous standby gone: a trigger that sleeps
  // while sj_test_hang has a row, on a pool without statement_timeout (which would not bound the
  // standby's wait either).
  await db.pool.query('CREATE TABLE public.sj_test_hang (on_ boolean)');
  await db.pool.query('INSERT INTO public.sj_test_hang VALUES (true)');
  await db.pool.query(
    `CREATE FUNCTION public.sj_test_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM public.sj_test_hang) THEN PERFORM pg_sleep(30); END IF; RETURN NEW; END $$`,
  );
  await db.pool.query(
    `CREATE TRIGGER sj_test_slow_commit BEFORE INSERT OR UPDATE ON session_janitor.latency_probe FOR EACH ROW EXECUTE FUNCTION public.sj_test_slow_commit()`,
  );
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  const connection = new RunProbeConnection(pool);
  try {
    const probe = commitLatencyProbe(connection, { boundMs: 500 });
    assert.equal(await probe(), 500);
    await db.pool.query('DELETE FROM public.sj_test_hang');
    const { rows: marker } = await db.pool.query<{ at: Date }>('SELECT clock_timestamp() AS at');
    assert.ok(Number.isFinite(await probe()));
    // The next probe committed its row, on a connection of its own: the hung one was discarded.
    const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM session_janitor.latency_probe WHERE probed_at >= $1`, [marker[0]?.at]);
    assert.equal(rows[0]?.n, '1');
  } finally {
    await connection.release();
    await pool.end();
    // The hung probe's backend sleeps on without its client.
    await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'`);
  }
});
