import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { qualified } from '../../src/db/sql/identifiers.ts';
import { throttleProbe, type ProbeRow } from '../../src/db/sql/throttle.ts';
import { createLogger } from '../../src/logger.ts';
import { createMetrics } from '../../src/metrics.ts';
import { probeDatabase } from '../../src/tasks/brakes.ts';
import { purgeExpired } from '../../src/tasks/purge-expired.ts';
import {
  dutyCycleSleepMs,
  isOff,
  needsProbe,
  pauseReason,
  THROTTLE_OFF,
  Throttle,
  WalMeter,
  walSleepMs,
  type DatabaseState,
  type ThrottleEvent,
  type ThrottleSettings,
} from '../../src/tasks/throttle.ts';
import { capturingLogger, expiredAndLive, insertBulkSessions, remainingIds, taskContext, testConfig, useTestDatabase } from '../helpers/database.ts';

const settings = (overrides: Partial<ThrottleSettings>): ThrottleSettings => ({ ...THROTTLE_OFF, ...overrides });
const CLEAR: DatabaseState = { replicaLagSeconds: 0, vacuumRunning: false };

describe('throttle: pure logic', () => {
  test('the duty cycle sleeps so that batches fill the given share of a lane', () => {
    assert.equal(dutyCycleSleepMs(20, 100), 0);
    assert.equal(dutyCycleSleepMs(20, 50), 20);
    assert.equal(dutyCycleSleepMs(20, 25), 60);
    assert.equal(dutyCycleSleepMs(0, 25), 0);
  });

  test('the WAL cap allows one second of burst, then holds the rate', () => {
    const mb = 1024 * 1024;
    assert.equal(walSleepMs(100 * mb, 0, null), 0);
    assert.equal(walSleepMs(10 * mb, 0, 10 * mb), 0); // the burst
    assert.equal(walSleepMs(20 * mb, 1000, 10 * mb), 0); // exactly on the rate
    assert.equal(walSleepMs(25 * mb, 1000, 10 * mb), 500); // 5 MB ahead at 10 MB/s
  });

  test('pauses for a lag beyond the bound or a running vacuum, never for an unknown state', () => {
    const s = settings({ maxReplicaLagSeconds: 30, pauseOnVacuum: true });
    assert.equal(pauseReason(CLEAR, s), null);
    assert.equal(pauseReason({ replicaLagSeconds: 30, vacuumRunning: false }, s), null);
    assert.equal(pauseReason({ replicaLagSeconds: 31, vacuumRunning: false }, s), 'replica-lag');
    assert.equal(pauseReason({ replicaLagSeconds: 0, vacuumRunning: true }, s), 'vacuum');
    assert.equal(pauseReason({ replicaLagSeconds: null, vacuumRunning: null }, s), null);
    assert.equal(pauseReason({ replicaLagSeconds: 999, vacuumRunning: true }, THROTTLE_OFF), null);
  });

  test('off means off: no throttle, no probe', () => {
    assert.ok(isOff(THROTTLE_OFF));
    assert.ok(!needsProbe(THROTTLE_OFF));
    assert.ok(!isOff(settings({ dutyCyclePercent: 50 })));
    assert.ok(!needsProbe(settings({ dutyCyclePercent: 50 })));
    assert.ok(needsProbe(settings({ maxReplicaLagSeconds: 10 })));
    assert.ok(needsProbe(settings({ pauseOnVacuum: true })));
  });

  test("the WAL meter counts the union of the batches' intervals", () => {
    const meter = new WalMeter();
    meter.add(100, 200);
    meter.add(150, 300); // overlaps the first: adds 100
    meter.add(120, 250); // inside what is covered: adds nothing
    meter.add(400, 450);
    meter.add(Number.NaN, 500); // not measured: ignored
    meter.add(600, 600);
    assert.equal(meter.bytes, 250);
  });
});

/** A throttle on a fake clock whose sleeps only advance the clock. */
function fakeThrottle(s: ThrottleSettings, states: DatabaseState[]) {
  let now = 0;
  const sleeps: number[] = [];
  const events: ThrottleEvent[] = [];
  let probes = 0;
  const throttle = new Throttle(s, {
    probe: async () => {
      probes += 1;
      return states.shift() ?? CLEAR;
    },
    sleep: async (ms, signal) => {
      if (signal.aborted) return false;
      sleeps.push(ms);
      now += ms;
      return true;
    },
    now: () => now,
    probeIntervalMs: 1000,
    onEvent: (e) => events.push(e),
  });
  return { throttle, sleeps, events, probes: () => probes, advance: (ms: number) => (now += ms) };
}

describe('throttle: Throttle', () => {
  test('each lane sleeps its own duty-cycle debt before its next batch', async () => {
    const t = fakeThrottle(settings({ dutyCyclePercent: 20 }), []);
    const signal = new AbortController().signal;
    assert.equal(await t.throttle.beforeBatch(0, signal), true);
    assert.deepEqual(t.sleeps, []);
    t.throttle.afterBatch(0, 10, Number.NaN, Number.NaN);
    t.throttle.afterBatch(1, 5, Number.NaN, Number.NaN);
    await t.throttle.beforeBatch(0, signal);
    await t.throttle.beforeBatch(1, signal);
    assert.deepEqual(t.sleeps, [40, 20]);
    await t.throttle.beforeBatch(0, signal); // the debt was paid
    assert.deepEqual(t.sleeps, [40, 20]);
    assert.equal(t.throttle.stats.sleptMs, 60);
    assert.equal(t.probes(), 0);
  });

  test('the WAL cap sleeps until the run is back under its rate', async () => {
    const t = fakeThrottle(settings({ maxWalBytesPerSecond: 1000 }), []);
    const signal = new AbortController().signal;
    t.throttle.afterBatch(0, 1, 0, 3000); // 3000 bytes at t=0: 2000 beyond the burst
    await t.throttle.beforeBatch(0, signal);
    assert.deepEqual(t.sleeps, [2000]);
    assert.equal(t.throttle.stats.walBytes, 3000);
  });

  test('pauses while the probe reports a reason, probing once per interval', async () => {
    const lagging = { replicaLagSeconds: 120, vacuumRunning: false };
    const t = fakeThrottle(settings({ maxReplicaLagSeconds: 60 }), [lagging, lagging, lagging, CLEAR]);
    const signal = new AbortController().signal;
    assert.equal(await t.throttle.beforeBatch(0, signal), true);
    assert.equal(t.probes(), 4);
    assert.deepEqual(t.sleeps, [1000, 1000, 1000]);
    assert.deepEqual(
      t.events.map((e) => e.kind),
      ['pause', 'resume'],
    );
    assert.equal(t.throttle.stats.pausedMs, 3000);
    // Within the interval, another lane reuses the last reading.
    await t.throttle.beforeBatch(1, signal);
    assert.equal(t.probes(), 4);
    t.advance(1000);
    await t.throttle.beforeBatch(1, signal);
    assert.equal(t.probes(), 5);
  });

  test('an unknown state never pauses, and is told once', async () => {
    const unknown = { replicaLagSeconds: null, vacuumRunning: null };
    const t = fakeThrottle(settings({ maxReplicaLagSeconds: 1, pauseOnVacuum: true }), [unknown, unknown]);
    const signal = new AbortController().signal;
    assert.equal(await t.throttle.beforeBatch(0, signal), true);
    t.advance(2000);
    assert.equal(await t.throttle.beforeBatch(0, signal), true);
    assert.deepEqual(t.sleeps, []);
    assert.deepEqual(t.events, [
      { kind: 'unknown', what: 'replica-lag' },
      { kind: 'unknown', what: 'vacuum' },
    ]);
  });

  test('a failing probe reads as unknown', async () => {
    const throttle = new Throttle(settings({ pauseOnVacuum: true }), {
      probe: () => Promise.reject(new Error('connection lost')),
      sleep: async () => true,
    });
    assert.equal(await throttle.beforeBatch(0, new AbortController().signal), true);
  });

  test('an aborted signal ends a sleep or a pause: beforeBatch says stop', async () => {
    const controller = new AbortController();
    controller.abort();
    const duty = fakeThrottle(settings({ dutyCyclePercent: 10 }), []);
    duty.throttle.afterBatch(0, 10, Number.NaN, Number.NaN);
    assert.equal(await duty.throttle.beforeBatch(0, controller.signal), false);
    const paused = fakeThrottle(settings({ pauseOnVacuum: true }), [{ replicaLagSeconds: 0, vacuumRunning: true }]);
    assert.equal(await paused.throttle.beforeBatch(0, controller.signal), false);
  });
});

describe('throttle: configuration', () => {
  const load = (env: Record<string, string>) => loadConfig({ DATABASE_URL: 'postgres://localhost/x', ...env });

  test('defaults: no duty cycle, no WAL cap, pause beyond 60 s of replica lag, not for vacuum; asynchronous commit', () => {
    const config = load({});
    assert.equal(config.purgeDutyCyclePercent, 100);
    assert.equal(config.purgeMaxWalBytesPerSecond, null);
    assert.equal(config.purgeMaxReplicaLagSeconds, 60);
    assert.equal(config.purgePauseOnVacuum, false);
    assert.equal(config.asyncCommit, true);
  });

  test('parses rates with units, and off', () => {
    assert.equal(load({ JANITOR_PURGE_MAX_WAL_RATE: '16MB' }).purgeMaxWalBytesPerSecond, 16 * 1024 * 1024);
    assert.equal(load({ JANITOR_PURGE_MAX_WAL_RATE: '512kB' }).purgeMaxWalBytesPerSecond, 512 * 1024);
    assert.equal(load({ JANITOR_PURGE_MAX_WAL_RATE: 'off' }).purgeMaxWalBytesPerSecond, null);
    assert.equal(load({ JANITOR_PURGE_MAX_REPLICA_LAG: 'off' }).purgeMaxReplicaLagSeconds, null);
    assert.equal(load({ JANITOR_PURGE_MAX_REPLICA_LAG: '5m' }).purgeMaxReplicaLagSeconds, 300);
  });

  test('refuses bad values, naming the variable', () => {
    for (const [variable, value] of [
      ['JANITOR_PURGE_MAX_WAL_RATE', '16'],
      ['JANITOR_PURGE_MAX_WAL_RATE', '1kB'],
      ['JANITOR_PURGE_MAX_WAL_RATE', '16 mb'],
      ['JANITOR_PURGE_DUTY_CYCLE', '0'],
      ['JANITOR_PURGE_DUTY_CYCLE', '101'],
      ['JANITOR_PURGE_MAX_REPLICA_LAG', '0s'],
      ['JANITOR_PURGE_PAUSE_ON_VACUUM', 'yes'],
      ['JANITOR_PURGE_ASYNC_COMMIT', 'maybe'],
    ] as const) {
      assert.throws(
        () => load({ [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable,
        `${variable}=${value}`,
      );
    }
  });
});

describe('throttle: a purge on a real database', () => {
  const db = useTestDatabase();
  const reset = () => db.pool.query('TRUNCATE auth.refresh_session, auth."user" CASCADE');
  const left = () => expiredAndLive(db.pool);
  const small = { JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MIN_SIZE: '100', JANITOR_BATCH_MAX_SIZE: '100' };

  test('with a duty cycle the purge deletes exactly the expired rows, and sleeps at least as long as it worked', async () => {
    await reset();
    await insertBulkSessions(db.pool, 2000, 0.75);
    const ctx = taskContext(testConfig(db.url, { ...small, JANITOR_PURGE_CONCURRENCY: '1', JANITOR_PURGE_DUTY_CYCLE: '50' }));
    const batchMs: number[] = [];
    const started = performance.now();
    try {
      const output = await purgeExpired(ctx, { onBatch: (b) => batchMs.push(b.durationMs) });
      const elapsed = performance.now() - started;
      assert.equal(output.deleted, 1500);
      assert.equal(output.stoppedBy, 'drained');
      assert.deepEqual(await left(), { expired: 0, live: 500 });
      // At 50%, the lane sleeps as long as each batch took before the next one: a lower bound only.
      const worked = batchMs.reduce((a, b) => a + b, 0);
      assert.ok(elapsed >= 2 * worked - (batchMs.at(-1) ?? 0), `elapsed ${elapsed} ms, batches ${worked} ms`);
    } finally {
      await ctx.pool.end();
    }
  });

  test("a WAL cap keeps exact deletes, measures the purge's WAL and sleeps", async () => {
    await reset();
    await insertBulkSessions(db.pool, 2500, 0.8);
    const { log, lines } = capturingLogger('debug');
    // The latency guard off: its own sleeps (this database has no write counter history, so it starts
    // cautious) can keep the WAL under the cap, and the cap would then have nothing to do.
    const config = testConfig(db.url, {
      ...small,
      JANITOR_PURGE_CONCURRENCY: '2',
      JANITOR_PURGE_MAX_WAL_RATE: '64kB',
      JANITOR_PURGE_MAX_REPLICA_LAG: 'off',
      JANITOR_LATENCY_GUARD: 'off',
    });
    const ctx = { ...taskContext(config), log };
    try {
      const output = await purgeExpired(ctx);
      assert.equal(output.deleted, 2000);
      assert.deepEqual(await left(), { expired: 0, live: 500 });
    } finally {
      await ctx.pool.end();
    }
    const stats = lines.map((l) => JSON.parse(l) as { msg: string; walBytes?: number; sleptMs?: number }).find((l) => l.msg === 'purge throttle');
    assert.ok(stats?.walBytes !== undefined && stats.walBytes > 64 * 1024, `walBytes ${stats?.walBytes}`);
    assert.ok(stats?.sleptMs !== undefined && stats.sleptMs > 0, `sleptMs ${stats?.sleptMs}`);
  });

  test('while the probe reports a vacuum the purge deletes nothing, and stops on its time budget', async () => {
    await reset();
    await insertBulkSessions(db.pool, 500, 1);
    const ctx = taskContext(testConfig(db.url, { JANITOR_PURGE_PAUSE_ON_VACUUM: 'true', JANITOR_MAX_RUN_SECONDS: '1' }));
    let probes = 0;
    try {
      const output = await purgeExpired(
        ctx,
        {},
        {
          probe: async () => {
            probes += 1;
            return { replicaLagSeconds: 0, vacuumRunning: true };
          },
        },
      );
      assert.deepEqual(output, { deleted: 0, batches: 0, stoppedBy: 'time-budget' });
      assert.ok(probes >= 1);
      assert.equal((await remainingIds(db.pool)).length, 500);
    } finally {
      await ctx.pool.end();
    }
  });

  test('a pause ends when the probe clears, then the purge deletes exactly the expired rows', async () => {
    await reset();
    await insertBulkSessions(db.pool, 1000, 0.4);
    const ctx = taskContext(testConfig(db.url, { ...small, JANITOR_PURGE_MAX_REPLICA_LAG: '30s', JANITOR_PURGE_CONCURRENCY: '2' }));
    const states: DatabaseState[] = [{ replicaLagSeconds: 45, vacuumRunning: false }];
    let batchesWhilePaused = 0;
    let paused = true;
    try {
      const output = await purgeExpired(
        ctx,
        { onBatch: () => (batchesWhilePaused += paused ? 1 : 0) },
        {
          probe: async () => {
            const state = states.shift();
            paused = state !== undefined;
            return state ?? CLEAR;
          },
        },
      );
      assert.equal(batchesWhilePaused, 0);
      assert.equal(output.deleted, 400);
      assert.deepEqual(await left(), { expired: 0, live: 600 });
    } finally {
      await ctx.pool.end();
    }
  });

  test('the real probe: a superuser sees no replica and no vacuum; a role without pg_monitor sees unknown', async () => {
    const ctx = taskContext(testConfig(db.url));
    const client = await ctx.pool.connect();
    try {
      assert.deepEqual(await probeDatabase(client, ctx), { replicaLagSeconds: 0, vacuumRunning: false });
    } finally {
      client.release();
      await ctx.pool.end();
    }
    const role = `sj_probe_${Math.random().toString(36).slice(2, 10)}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'probe'`);
    // As the worker's role in production (sql/roles.sql): USAGE on auth, no pg_monitor.
    await db.pool.query(`GRANT USAGE ON SCHEMA auth TO ${role}`);
    try {
      const url = new URL(db.url);
      url.username = role;
      url.password = 'probe';
      const unprivileged = new pg.Client({ connectionString: url.toString() });
      await unprivileged.connect();
      try {
        const { rows } = await unprivileged.query<ProbeRow>({ ...throttleProbe, values: [qualified({ schema: 'auth', name: 'refresh_session' })] });
        assert.equal(rows[0]?.privileged, false);
        const state = await probeDatabase(unprivileged, { config: testConfig(db.url), pool: db.pool, metrics: createMetrics(), log: createLogger('silent') });
        assert.deepEqual(state, { replicaLagSeconds: null, vacuumRunning: null });
      } finally {
        await unprivileged.end();
      }
    } finally {
      await db.pool.query(`REVOKE USAGE ON SCHEMA auth FROM ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });
});
