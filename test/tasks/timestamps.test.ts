/**
 * Timestamps the worker carries between statements or computes on, against databases whose session
 * settings differ from the defaults (issue 17.4) and rows whose timestamps are ±infinity (17.5).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { instantText } from '../../src/db/sql/timestamps.ts';
import { refreshBacklog } from '../../src/gauges.ts';
import { purgeExpired } from '../../src/tasks/purge-expired.ts';
import { readReapPosition, reapIdle } from '../../src/tasks/reap-idle.ts';
import { revoke } from '../../src/tasks/revoke.ts';
import { createTestDatabase, insertSessions, remainingIds, taskContext, testConfig, type TestDatabase } from '../helpers/database.ts';

/** Batches of exactly 10 rows, so that every set of rows below takes several batches with a bound. */
const TEN = {
  JANITOR_BATCH_SIZE: '10',
  JANITOR_BATCH_MIN_SIZE: '10',
  JANITOR_BATCH_MAX_SIZE: '10',
  JANITOR_PURGE_BATCH_MAX_SIZE: '10',
  // A run that stalls (the bug) ends on its time budget rather than the test's timeout.
  JANITOR_MAX_RUN_SECONDS: '5',
};

/** Sets a database's defaults; only connections opened afterwards see them. */
async function alterDatabase(url: string, settings: Record<string, string>): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const [key, value] of Object.entries(settings)) await client.query(`ALTER DATABASE ${name} SET ${key} = '${value}'`);
  } finally {
    await client.end();
  }
}

/**
 * Past timestamps on both sides of Dublin's DST changes, denser than a batch per hour (a summer
 * day, a winter day, and the hours around the spring change of 2026-03-29 01:00 UTC), in `column`,
 * then live rows. Returns the live rows' ids and how many past rows there are.
 */
async function insertAcrossDst(pool: pg.Pool, column: 'expires_at' | 'last_used_at'): Promise<{ live: number[]; past: number }> {
  const [user] = await insertSessions(pool, [{ expiresIn: 86_400 }]);
  await pool.query('TRUNCATE auth.refresh_session');
  const past = `(SELECT t FROM generate_series('2025-07-01 10:00Z'::timestamptz, '2025-07-01 14:00Z', '3 minutes') t
          UNION ALL SELECT t FROM generate_series('2026-01-10 10:00Z'::timestamptz, '2026-01-10 14:00Z', '7 minutes') t
          UNION ALL SELECT t FROM generate_series('2026-03-28 23:00Z'::timestamptz, '2026-03-29 03:00Z', '2 minutes') t)`;
  const inserted = await pool.query(
    column === 'expires_at'
      ? `INSERT INTO auth.refresh_session (user_id, expires_at) SELECT $1::int, t FROM ${past} AS p(t)`
      : `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at) SELECT $1::int, now() + interval '30 days', t FROM ${past} AS p(t)`,
    [user?.userId],
  );
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO auth.refresh_session (user_id, expires_at) SELECT $1::int, now() + make_interval(days => g) FROM generate_series(1, 15) g RETURNING id`,
    [user?.userId],
  );
  return { live: rows.map((r) => r.id).sort((a, b) => a - b), past: inserted.rowCount ?? -1 };
}

for (const dateStyle of ['SQL, DMY', 'Postgres']) {
  describe(`DateStyle '${dateStyle}', TimeZone Europe/Dublin`, () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase();
      await alterDatabase(db.url, { DateStyle: dateStyle, TimeZone: 'Europe/Dublin' });
    });
    after(async () => {
      await db.drop();
    });

    test('instantText reads back as the same instant: microseconds, summer and winter, BC and far years, ±infinity', async () => {
      const instants = ['2025-07-01 12:00:00.123456Z', '2026-01-10 12:00:00Z', '0044-03-15 12:00:00.5Z BC', '4713-11-24 00:00:00Z BC', '294276-12-31 23:59:59.999999Z', '10000-01-01Z', 'infinity', '-infinity'];
      const { rows } = await db.pool.query<{ shown: string; carried: string; same: boolean }>(
        `SELECT x::text AS shown, ${instantText('x')} AS carried, (${instantText('x')})::timestamptz = x AS same FROM unnest($1::timestamptz[]) AS x`,
        [instants],
      );
      assert.equal(rows.length, instants.length);
      for (const row of rows) assert.ok(row.same, `${row.shown} carried as ${row.carried}`);
      // The session really prints in its own style (else this test would prove nothing).
      assert.ok(rows.some((row) => row.shown.includes('IST')), rows.map((r) => r.shown).join(', '));
    });

    for (const concurrency of ['1', '2']) {
      test(`the purge deletes exactly the expired rows across a DST change (JANITOR_PURGE_CONCURRENCY=${concurrency})`, async () => {
        const { live, past } = await insertAcrossDst(db.pool, 'expires_at');
        const ctx = taskContext(testConfig(db.url, { ...TEN, JANITOR_PURGE_CONCURRENCY: concurrency }));
        try {
          const output = await purgeExpired(ctx);
          assert.deepEqual(await remainingIds(db.pool), live);
          assert.equal(output.stoppedBy, 'drained');
          assert.equal(output.deleted, past);
        } finally {
          await ctx.pool.end();
        }
      });
    }

    test('the reaper through an index on last_used_at deletes exactly the idle rows across a DST change', async () => {
      await db.pool.query('CREATE INDEX IF NOT EXISTS refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
      const { live, past } = await insertAcrossDst(db.pool, 'last_used_at');
      const ctx = taskContext(testConfig(db.url, { ...TEN, JANITOR_IDLE_TIMEOUT: '1h' }));
      try {
        const output = await reapIdle(ctx);
        assert.deepEqual(await remainingIds(db.pool), live);
        assert.equal(output.stoppedBy, 'drained');
        assert.equal(output.deleted, past);
      } finally {
        await ctx.pool.end();
        await db.pool.query('DROP INDEX auth.refresh_session_last_used_at_idx');
      }
    });

    test("the reaper's position reads its times (for status)", async () => {
      const ctx = taskContext(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h' }));
      try {
        await reapIdle(ctx);
        const position = await readReapPosition(ctx);
        assert.ok(position !== null && Math.abs(position.passStartedAt.getTime() - Date.now()) < 60_000, String(position?.passStartedAt));
      } finally {
        await ctx.pool.end();
      }
    });
  });
}

describe('±infinity timestamps', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  /** 25 rows that expire at -infinity, 5 at +infinity, 12 expired, 5 live; returns the ids that must stay. */
  async function insertInfinities(): Promise<number[]> {
    const [user] = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
    await db.pool.query('TRUNCATE auth.refresh_session');
    await db.pool.query(
      `INSERT INTO auth.refresh_session (user_id, expires_at, created_at)
       SELECT $1::int, '-infinity', CASE WHEN g % 2 = 0 THEN '-infinity'::timestamptz ELSE now() END FROM generate_series(1, 25) g
       UNION ALL SELECT $1::int, now() - make_interval(hours => g), now() - interval '30 days' FROM generate_series(1, 12) g`,
      [user?.userId],
    );
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO auth.refresh_session (user_id, expires_at) SELECT $1::int, 'infinity' FROM generate_series(1, 5)
       UNION ALL SELECT $1::int, now() + make_interval(days => g) FROM generate_series(1, 5) g RETURNING id`,
      [user?.userId],
    );
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  for (const concurrency of ['1', '2']) {
    test(`the purge deletes the -infinity and expired rows, never the +infinity ones (JANITOR_PURGE_CONCURRENCY=${concurrency})`, async () => {
      const kept = await insertInfinities();
      const ctx = taskContext(testConfig(db.url, { ...TEN, JANITOR_PURGE_CONCURRENCY: concurrency }));
      try {
        const output = await purgeExpired(ctx);
        assert.deepEqual(await remainingIds(db.pool), kept);
        assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: 37, stoppedBy: 'drained' });
      } finally {
        await ctx.pool.end();
      }
    });
  }

  test('the backlog gauges count -infinity rows and report the oldest finite wait', async () => {
    await insertInfinities();
    const ctx = taskContext(testConfig(db.url));
    try {
      await refreshBacklog(ctx);
      assert.equal((await ctx.metrics.expiredBacklogSessions.get()).values[0]?.value, 37);
      const oldest = (await ctx.metrics.expiredBacklogOldest.get()).values[0]?.value ?? Number.NaN;
      // The oldest finite purgeable row expired 12 hours ago.
      assert.ok(Math.abs(oldest - 12 * 3600) < 60, `oldest ${oldest}`);
    } finally {
      await ctx.pool.end();
    }
  });

  test('only -infinity rows purgeable: the gauge counts them, its age stays finite', async () => {
    await insertInfinities();
    await db.pool.query(`DELETE FROM auth.refresh_session WHERE isfinite(expires_at) AND expires_at < now()`);
    const ctx = taskContext(testConfig(db.url));
    try {
      await refreshBacklog(ctx);
      assert.equal((await ctx.metrics.expiredBacklogSessions.get()).values[0]?.value, 25);
      assert.equal((await ctx.metrics.expiredBacklogOldest.get()).values[0]?.value, 0);
    } finally {
      await ctx.pool.end();
    }
  });

  for (const index of [false, true]) {
    test(`the reaper deletes rows last used at -infinity, never those at +infinity (${index ? 'through an index' : 'by id ranges'})`, async () => {
      const [user] = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
      await db.pool.query('TRUNCATE auth.refresh_session, session_janitor.reap_position');
      if (index) await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
      await db.pool.query(
        `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at)
         SELECT $1::int, now() + interval '30 days', '-infinity' FROM generate_series(1, 25)
         UNION ALL SELECT $1::int, now() + interval '30 days', now() - make_interval(hours => g + 1) FROM generate_series(1, 12) g`,
        [user?.userId],
      );
      const { rows } = await db.pool.query<{ id: number }>(
        `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at)
         SELECT $1::int, now() + interval '30 days', 'infinity' FROM generate_series(1, 5)
         UNION ALL SELECT $1::int, now() + interval '30 days', now() FROM generate_series(1, 5) RETURNING id`,
        [user?.userId],
      );
      const ctx = taskContext(testConfig(db.url, { ...TEN, JANITOR_IDLE_TIMEOUT: '1h' }));
      try {
        const output = await reapIdle(ctx);
        assert.deepEqual(await remainingIds(db.pool), rows.map((r) => r.id).sort((a, b) => a - b));
        assert.equal(output.deleted, 37);
      } finally {
        await ctx.pool.end();
        if (index) await db.pool.query('DROP INDEX auth.refresh_session_last_used_at_idx');
      }
    });
  }

  for (const userId of [false, true]) {
    test(`issuedBefore${userId ? ' with userId' : ''} revokes sessions created at -infinity, never those created at +infinity`, async () => {
      const [user] = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
      await db.pool.query('TRUNCATE auth.refresh_session');
      await db.pool.query(
        `INSERT INTO auth.refresh_session (user_id, expires_at, created_at)
         SELECT $1::int, now() + interval '30 days', '-infinity' FROM generate_series(1, 25)
         UNION ALL SELECT $1::int, now() + interval '30 days', now() - interval '2 days' FROM generate_series(1, 5)`,
        [user?.userId],
      );
      const { rows } = await db.pool.query<{ id: number }>(
        `INSERT INTO auth.refresh_session (user_id, expires_at, created_at)
         SELECT $1::int, now() + interval '30 days', 'infinity' FROM generate_series(1, 5)
         UNION ALL SELECT $1::int, now() + interval '30 days', now() FROM generate_series(1, 5) RETURNING id`,
        [user?.userId],
      );
      const ctx = taskContext(testConfig(db.url, TEN));
      try {
        const issuedBefore = new Date(Date.now() - 86_400_000).toISOString();
        const output = await revoke(ctx, userId ? { userId: user?.userId ?? 0, issuedBefore, reason: 'test' } : { issuedBefore, reason: 'test' });
        assert.deepEqual(await remainingIds(db.pool), rows.map((r) => r.id).sort((a, b) => a - b));
        assert.equal(output.revoked, 30);
      } finally {
        await ctx.pool.end();
      }
    });
  }
});
