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
import { loadReapPosition } from '../../src/db/reap-position.ts';
import { reapIdle } from '../../src/tasks/reap-idle.ts';
import { revoke } from '../../src/tasks/revoke.ts';
import type { TaskContext } from '../../src/tasks/context.ts';
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

type Column = 'expires_at' | 'last_used_at' | 'created_at';

/**
 * One user's sessions, group by group: n rows whose `column` is the SQL expression (of g, 1 to n),
 * the others' expires_at a month away. Returns each group's ids.
 */
async function insertGroups(pool: pg.Pool, column: Column, groups: ReadonlyArray<readonly [n: number, value: string]>): Promise<number[][]> {
  const [user] = await insertSessions(pool, [{ expiresIn: 86_400 }]);
  await pool.query('TRUNCATE auth.refresh_session, session_janitor.reap_position');
  const [columns, month] = column === 'expires_at' ? ['expires_at', ''] : [`expires_at, ${column}`, `now() + interval '30 days', `];
  const ids: number[][] = [];
  for (const [n, value] of groups) {
    const { rows } = await pool.query<{ id: number }>(
      `INSERT INTO auth.refresh_session (user_id, ${columns}) SELECT $1::int, ${month}${value} FROM generate_series(1, $2::int) g RETURNING id`,
      [user?.userId, n],
    );
    ids.push(rows.map((r) => r.id));
  }
  return ids;
}

const sorted = (ids: readonly number[][]) => ids.flat().sort((a, b) => a - b);

/** One run on a task context (and pool) of its own, as a new worker process would have. */
async function withTask<T>(url: string, env: Record<string, string>, run: (ctx: TaskContext) => Promise<T>): Promise<T> {
  const ctx = taskContext(testConfig(url, env));
  try {
    return await run(ctx);
  } finally {
    await ctx.pool.end();
  }
}

/**
 * Past instants on both sides of Dublin's DST changes, denser than a batch per hour: a summer
 * morning, a winter one, and the hours around the spring change of 2026-03-29 01:00 UTC.
 */
const ACROSS_DST = [
  [81, `'2025-07-01 10:00Z'::timestamptz + make_interval(mins => 3 * (g - 1))`],
  [35, `'2026-01-10 10:00Z'::timestamptz + make_interval(mins => 7 * (g - 1))`],
  [121, `'2026-03-28 23:00Z'::timestamptz + make_interval(mins => 2 * (g - 1))`],
] as const;

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
      const instants = [
        '2025-07-01 12:00:00.123456Z',
        '2026-01-10 12:00:00Z',
        '0044-03-15 12:00:00.5Z BC',
        '4713-11-24 00:00:00Z BC',
        '294276-12-31 23:59:59.999999Z',
        '10000-01-01Z',
        'infinity',
        '-infinity',
      ];
      const { rows } = await db.pool.query<{ shown: string; carried: string; same: boolean }>(
        `SELECT x::text AS shown, ${instantText('x')} AS carried, (${instantText('x')})::timestamptz = x AS same FROM unnest($1::timestamptz[]) AS x`,
        [instants],
      );
      assert.equal(rows.length, instants.length);
      for (const row of rows) assert.ok(row.same, `${row.shown} carried as ${row.carried}`);
      // The session really prints in its own style (else this test would prove nothing).
      assert.ok(
        rows.some((row) => row.shown.includes('IST')),
        rows.map((r) => r.shown).join(', '),
      );
    });

    for (const concurrency of ['1', '2']) {
      test(`the purge deletes exactly the expired rows across a DST change (JANITOR_PURGE_CONCURRENCY=${concurrency})`, async () => {
        const groups = await insertGroups(db.pool, 'expires_at', [...ACROSS_DST, [15, 'now() + make_interval(days => g)']]);
        const output = await withTask(db.url, { ...TEN, JANITOR_PURGE_CONCURRENCY: concurrency }, (ctx) => purgeExpired(ctx));
        assert.deepEqual(await remainingIds(db.pool), sorted(groups.slice(3)));
        assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: sorted(groups.slice(0, 3)).length, stoppedBy: 'drained' });
      });
    }

    test('the reaper through an index on last_used_at deletes exactly the idle rows across a DST change', async () => {
      await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
      try {
        const groups = await insertGroups(db.pool, 'last_used_at', [...ACROSS_DST, [15, 'now()']]);
        const output = await withTask(db.url, { ...TEN, JANITOR_IDLE_TIMEOUT: '1h' }, (ctx) => reapIdle(ctx));
        assert.deepEqual(await remainingIds(db.pool), sorted(groups.slice(3)));
        assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: sorted(groups.slice(0, 3)).length, stoppedBy: 'drained' });
      } finally {
        await db.pool.query('DROP INDEX auth.refresh_session_last_used_at_idx');
      }
    });

    test("the reaper's position reads its times (for status)", async () => {
      const position = await withTask(db.url, { JANITOR_IDLE_TIMEOUT: '1h' }, async (ctx) => {
        await reapIdle(ctx);
        return loadReapPosition(ctx.pool, ctx.config.sessionTable);
      });
      assert.ok(position !== null && Math.abs(position.passStartedAt.getTime() - Date.now()) < 60_000, String(position?.passStartedAt));
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

  /** The ids of the rows that must go (-infinity, past) and of those that must stay (+infinity, future), by `column`. */
  async function insertInfinities(column: Column, future: string): Promise<{ gone: number[]; kept: number[] }> {
    const groups = await insertGroups(db.pool, column, [
      [25, `'-infinity'`],
      [12, 'now() - make_interval(hours => g + 1)'],
      [5, `'infinity'`],
      [5, future],
    ]);
    return { gone: sorted(groups.slice(0, 2)), kept: sorted(groups.slice(2)) };
  }

  for (const concurrency of ['1', '2']) {
    test(`the purge deletes the -infinity and expired rows, never the +infinity ones (JANITOR_PURGE_CONCURRENCY=${concurrency})`, async () => {
      const { kept } = await insertInfinities('expires_at', 'now() + make_interval(days => g)');
      const output = await withTask(db.url, { ...TEN, JANITOR_PURGE_CONCURRENCY: concurrency }, (ctx) => purgeExpired(ctx));
      assert.deepEqual(await remainingIds(db.pool), kept);
      assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: 37, stoppedBy: 'drained' });
    });
  }

  /** The backlog gauges' values after one refresh. */
  const backlog = () =>
    withTask(db.url, {}, async (ctx) => {
      await refreshBacklog(ctx);
      return {
        sessions: (await ctx.metrics.expiredBacklogSessions.get()).values[0]?.value,
        oldest: (await ctx.metrics.expiredBacklogOldest.get()).values[0]?.value ?? Number.NaN,
      };
    });

  test('the backlog gauges count -infinity rows and report the oldest finite wait', async () => {
    await insertInfinities('expires_at', 'now() + make_interval(days => g)');
    const { sessions, oldest } = await backlog();
    assert.equal(sessions, 37);
    // The oldest finite purgeable row expired 13 hours ago.
    assert.ok(Math.abs(oldest - 13 * 3600) < 60, `oldest ${oldest}`);
  });

  test('only -infinity rows purgeable: the gauge counts them, its age stays finite', async () => {
    await insertInfinities('expires_at', 'now() + make_interval(days => g)');
    await db.pool.query(`DELETE FROM auth.refresh_session WHERE isfinite(expires_at) AND expires_at < now()`);
    assert.deepEqual(await backlog(), { sessions: 25, oldest: 0 });
  });

  for (const index of [false, true]) {
    test(`the reaper deletes rows last used at -infinity, never those at +infinity (${index ? 'through an index' : 'by id ranges'})`, async () => {
      if (index) await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
      try {
        const { kept } = await insertInfinities('last_used_at', 'now()');
        const output = await withTask(db.url, { ...TEN, JANITOR_IDLE_TIMEOUT: '1h' }, (ctx) => reapIdle(ctx));
        assert.deepEqual(await remainingIds(db.pool), kept);
        assert.equal(output.deleted, 37);
      } finally {
        if (index) await db.pool.query('DROP INDEX auth.refresh_session_last_used_at_idx');
      }
    });
  }

  for (const oneUser of [false, true]) {
    test(`issuedBefore${oneUser ? ' with userId' : ''} revokes sessions created at -infinity, never those created at +infinity`, async () => {
      const { kept } = await insertInfinities('created_at', 'now()');
      const { rows } = await db.pool.query<{ user_id: number }>('SELECT user_id FROM auth.refresh_session LIMIT 1');
      const issuedBefore = new Date(Date.now() - 1800_000).toISOString();
      const request = oneUser ? { userId: rows[0]?.user_id ?? 0, issuedBefore, reason: 'test' } : { issuedBefore, reason: 'test' };
      const output = await withTask(db.url, TEN, (ctx) => revoke(ctx, request));
      assert.deepEqual(await remainingIds(db.pool), kept);
      assert.equal(output.revoked, 37);
    });
  }
});
