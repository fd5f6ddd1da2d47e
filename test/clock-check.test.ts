/**
 * The clock check (src/tasks/clock-check.ts) on a real server: the process's clock is the one a test
 * can move (the database's cannot be), which makes the same difference. While they disagree beyond
 * the tolerance the purge and the reaper delete nothing, a run in flight stops within one batch, a
 * revocation still runs; once they agree again the purge drains.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { purgeExpired } from '../src/tasks/purge-expired.ts';
import { reapIdle } from '../src/tasks/reap-idle.ts';
import { revoke } from '../src/tasks/revoke.ts';
import { ClockCheck } from '../src/tasks/clock-check.ts';
import { insertBulkSessions, insertSessions, silentLogger, taskContext, testConfig, useTestDatabase } from './helpers/database.ts';

describe('the clock check', () => {
  const db = useTestDatabase();
  const count = async (where = 'true') => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM auth.refresh_session WHERE ${where}`)).rows[0]?.n;

  test('a difference beyond the tolerance holds the purge and the reaper, not a revocation; within it, or off, nothing holds', async () => {
    const base = taskContext(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h' }));
    let offsetMs = -3_600_000; // this process an hour behind: the database's clock "jumped" an hour ahead
    const clock = new ClockCheck(60, silentLogger(), base.metrics, () => Date.now() + offsetMs);
    const ctx = { ...base, clock };
    try {
      // Two users: 0 has an expired, an idle and a live session; 1 has two live ones.
      await insertSessions(
        db.pool,
        [{ expiresIn: -600 }, { expiresIn: 86_400, idleFor: 7200 }, { expiresIn: 86_400 }, { expiresIn: 86_400, user: 1 }, { expiresIn: 86_400, user: 1 }].map(
          (s, i) => ({ user: i < 3 ? 0 : 1, ...s }),
        ),
      );
      const skew = await clock.measure(db.pool);
      assert.ok(skew > 3590 && skew < 3610, String(skew));
      assert.equal(clock.holding, true);
      assert.equal((await base.metrics.clockSkewHold.get()).values[0]?.value, 1);
      assert.ok(((await base.metrics.clockSkew.get()).values[0]?.value ?? 0) > 3590);

      assert.deepEqual(await purgeExpired(ctx), { deleted: 0, batches: 0, stoppedBy: 'clock-skew' });
      assert.deepEqual(await reapIdle(ctx), { deleted: 0, batches: 0, stoppedBy: 'clock-skew' });
      assert.equal(await count(), 5);
      const user1 = (await db.pool.query<{ user_id: number }>('SELECT max(user_id) AS user_id FROM auth.refresh_session')).rows[0]?.user_id;
      assert.ok(user1 !== undefined);
      assert.deepEqual(await revoke(ctx, { userId: user1, reason: 'compromised' }), { revoked: 2 });
      assert.equal(await count(), 3);

      // Within the tolerance (30 s against 60 s): nothing holds. The check off: nothing holds.
      offsetMs = -30_000;
      await clock.measure(db.pool);
      assert.equal(clock.holding, false);
      const off = new ClockCheck(null, silentLogger(), base.metrics, () => Date.now() - 3_600_000);
      await off.measure(db.pool);
      assert.equal(off.holding, false);

      assert.deepEqual(await purgeExpired(ctx), { deleted: 1, batches: 1, stoppedBy: 'drained' });
      assert.equal((await reapIdle(ctx)).deleted, 1);
      assert.equal(await count(), 1);
      assert.equal((await base.metrics.clockSkewHold.get()).values[0]?.value, 0);
    } finally {
      await base.pool.end();
    }
  });

  test('a run in flight stops within one batch once a refresh sees the clocks disagree', async () => {
    await db.pool.query('DELETE FROM auth.refresh_session');
    await insertBulkSessions(db.pool, 3000, 1);
    const BATCH = 10;
    const base = taskContext(
      testConfig(db.url, { JANITOR_BATCH_SIZE: String(BATCH), JANITOR_BATCH_MIN_SIZE: String(BATCH), JANITOR_BATCH_MAX_SIZE: String(BATCH) }),
    );
    let offsetMs = 0;
    const clock = new ClockCheck(60, silentLogger(), base.metrics, () => Date.now() + offsetMs);
    try {
      await clock.measure(db.pool);
      const held: { measured?: Promise<number> } = {};
      let deletedWhenHeld = Number.NaN;
      let deleted = 0;
      const output = await purgeExpired(
        { ...base, clock },
        {
          onProgress: (p) => {
            deleted = p.deleted;
            if (p.batches === 5 && held.measured === undefined) {
              offsetMs = 2 * 3_600_000; // the process's clock ahead: the database's stepped back
              held.measured = clock.measure(db.pool).then((skew) => ((deletedWhenHeld = deleted), skew));
            }
          },
        },
      );
      assert.equal(output.stoppedBy, 'clock-skew');
      assert.ok(Number.isFinite(deletedWhenHeld));
      assert.ok(output.deleted - deletedWhenHeld <= BATCH, `${output.deleted - deletedWhenHeld} rows went after the hold`);
      assert.equal(await count(), 3000 - output.deleted);
      assert.ok(((await held.measured) ?? 0) < -7190);
    } finally {
      await base.pool.end();
    }
  });
});
