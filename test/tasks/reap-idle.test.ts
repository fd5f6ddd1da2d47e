import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createBoss, ensureSchedules } from '../../src/boss.ts';
import { positionKey, reapIds, reapRange, reapRangeCandidates, reapRangeExceptHeld, reapThroughIndex } from '../../src/db/sql/reap-idle.ts';
import { QUEUES, SCHEDULED_TASKS } from '../../src/queues.ts';
import type { RunOptions } from '../../src/tasks/batching.ts';
import type { TaskContext } from '../../src/tasks/context.ts';
import { detectStrategy, reapIdle } from '../../src/tasks/reap-idle.ts';
import {
  capturingLogger,
  holdRow,
  insertBulkSessions,
  insertSessions,
  refreshInFlight,
  releaseAll,
  remainingIds,
  silentLogger,
  taskContext,
  testConfig,
  useTestDatabase,
} from '../helpers/database.ts';
import { sessionIndexes, sessionScans } from '../helpers/plans.ts';
import { runCli } from '../helpers/process.ts';

const HOUR = 3600;
const DAY = 86_400;
const TABLE = { schema: 'auth', name: 'refresh_session' };
/** Fixed range widths (ids per statement), so the walk is predictable. */
const width = (n: number) => ({ JANITOR_BATCH_SIZE: String(n), JANITOR_BATCH_MIN_SIZE: String(n), JANITOR_BATCH_MAX_SIZE: String(n) });

interface PositionRow {
  pass: number;
  first_id: number;
  last_id: number;
  end_id: number;
  finished: boolean;
  pass_deleted: number;
}

describe('reap-idle', () => {
  const db = useTestDatabase();
  const reset = () => db.pool.query('TRUNCATE auth.refresh_session, auth."user", session_janitor.reap_position CASCADE');

  /** One run on a task context (and pool) of its own, as a new worker process would have. */
  async function reap(env: Record<string, string> = {}, options: RunOptions = {}) {
    const ctx = taskContext(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h', ...env }));
    try {
      const output = await reapIdle(ctx, options);
      return { output, ...(await counters(ctx)) };
    } finally {
      await ctx.pool.end();
    }
  }

  async function counters(ctx: TaskContext) {
    const deleted = await ctx.metrics.sessionsDeleted.get();
    const batches = await ctx.metrics.batchDuration.get();
    const errors = await ctx.metrics.errors.get();
    return {
      counted: deleted.values.find((v) => v.labels.reason === 'idle')?.value ?? 0,
      observed: batches.values.find((v) => v.metricName === 'session_janitor_batch_duration_seconds_count' && v.labels.task === 'reap-idle')?.value ?? 0,
      lockTimeouts: errors.values.find((v) => v.labels.kind === 'lock-timeout')?.value ?? 0,
    };
  }

  async function position(): Promise<PositionRow | undefined> {
    const { rows } = await db.pool.query<PositionRow>(
      `SELECT pass, first_id::int, last_id::int, end_id::int, pass_finished_at IS NOT NULL AS finished, pass_deleted::int
         FROM session_janitor.reap_position WHERE table_name = $1`,
      [positionKey(TABLE)],
    );
    return rows[0];
  }

  /** The position after the first pass walked every one of rows (inserted in id order) and reaped `deleted`. */
  const firstPassFinished = (rows: readonly { id: number }[], deleted: number): PositionRow => ({
    pass: 1,
    first_id: (rows[0]?.id ?? 0) - 1,
    last_id: rows.at(-1)?.id ?? 0,
    end_id: rows.at(-1)?.id ?? 0,
    finished: true,
    pass_deleted: deleted,
  });

  const idleIds = async () =>
    (await db.pool.query<{ id: number }>(`SELECT id FROM auth.refresh_session WHERE last_used_at < now() - interval '1 hour' ORDER BY id`)).rows.map(
      (r) => r.id,
    );

  /** Both sides of the cutoff (1h), each with expires_at on both sides of now. */
  const MIXED = [
    { expiresIn: 30 * DAY, idleFor: 40 * DAY, idle: true }, // idle, far from expiry
    { expiresIn: -DAY, idleFor: 0, idle: false }, // expired, but used just now: not the reaper's
    { expiresIn: 30 * DAY, idleFor: 2 * HOUR, idle: true },
    { expiresIn: 30 * DAY, idleFor: HOUR + 10, idle: true }, // just past the cutoff
    { expiresIn: 30 * DAY, idleFor: HOUR - 10, idle: false }, // just within it
    { expiresIn: -60, idleFor: 60, idle: false },
    { expiresIn: -DAY, idleFor: 2 * HOUR, idle: true }, // expired and idle
    { expiresIn: 600, idleFor: 0, idle: false },
  ] as const;

  test('deletes exactly the idle rows, row for row; expires_at plays no part', async () => {
    await reset();
    const rows = await insertSessions(db.pool, MIXED);
    const { output, counted, observed } = await reap();
    assert.deepEqual(
      await remainingIds(db.pool),
      rows.filter((_, i) => !MIXED[i]?.idle).map((r) => r.id),
    );
    assert.deepEqual(output, { deleted: 4, batches: 1, stoppedBy: 'drained' });
    assert.equal(counted, 4);
    assert.equal(observed, 1);
    assert.deepEqual(await position(), firstPassFinished(rows, 4));
  });

  test('with a 1-hour timeout a table of fresh sessions loses nothing', async () => {
    await reset();
    await insertSessions(
      db.pool,
      Array.from({ length: 300 }, (_, i) => ({ expiresIn: i % 2 === 0 ? -DAY : DAY, idleFor: (i * 11) % (HOUR - 60) })),
    );
    const { output } = await reap(width(50));
    assert.deepEqual(output, { deleted: 0, batches: 6, stoppedBy: 'drained' });
    assert.equal((await remainingIds(db.pool)).length, 300);
  });

  test('a pass larger than a run is finished by the next runs, each on a new pool, from the stored position; then a new pass starts', async () => {
    await reset();
    await db.pool.query(`INSERT INTO auth."user" (email) VALUES ('walk@example.invalid')`);
    // 2000 sessions, every third one idle for 2 hours.
    await db.pool.query(
      `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at)
       SELECT (SELECT min(id) FROM auth."user"), now() + interval '30 days',
              CASE WHEN g % 3 = 0 THEN now() - interval '2 hours' ELSE now() END
         FROM generate_series(1, 2000) g`,
    );
    const idleAtStart = await idleIds();
    const all = await remainingIds(db.pool);
    assert.equal(idleAtStart.length, 666);
    const env = { ...width(50), JANITOR_MAX_RUN_ROWS: '100' };

    const first = await reap(env);
    assert.deepEqual(first.output.stoppedBy, 'row-budget');
    assert.equal(first.output.deleted, 100);
    const afterFirst = await position();
    assert.ok(afterFirst);
    assert.equal(afterFirst.pass, 1);
    assert.equal(afterFirst.first_id, (all[0] ?? 0) - 1);
    assert.equal(afterFirst.end_id, all.at(-1));
    assert.equal(afterFirst.finished, false);
    assert.equal(afterFirst.pass_deleted, 100);

    // Sessions created during the pass are beyond its end: the next pass reaps them.
    const late = await insertSessions(db.pool, [
      { expiresIn: DAY, idleFor: 2 * HOUR },
      { expiresIn: DAY, idleFor: 0 },
    ]);

    let runs = 1;
    let deleted = first.output.deleted;
    let previous = afterFirst.last_id;
    for (;;) {
      const at = await position();
      assert.ok(at);
      // Exactly the idle rows up to the stored position are gone, every one after it is still there.
      const idleNow = await idleIds();
      assert.deepEqual(
        idleNow.filter((id) => id <= all.at(-1)!),
        idleAtStart.filter((id) => id > at.last_id),
        `after run ${runs}`,
      );
      assert.equal(at.pass_deleted, deleted);
      if (at.finished) break;
      const run = await reap(env);
      runs += 1;
      deleted += run.output.deleted;
      const now = await position();
      assert.ok(now && now.last_id > previous, 'each run resumes and moves on');
      previous = now.last_id;
      assert.ok(runs < 20, 'the pass never ends');
    }
    assert.equal(runs, 7, 'six runs of 100 rows and one of 66');
    assert.equal(deleted, 666);
    const done = await position();
    assert.equal(done?.last_id, done?.end_id);
    assert.deepEqual(await remainingIds(db.pool), [...all.filter((id) => !idleAtStart.includes(id)), ...late.map((s) => s.id)]);

    // Two old sessions go idle: the next run starts pass 2 from the beginning of the table.
    const goneIdle = all.filter((id) => !idleAtStart.includes(id)).slice(0, 2);
    await db.pool.query(`UPDATE auth.refresh_session SET last_used_at = now() - interval '3 hours' WHERE id = ANY($1::int[])`, [goneIdle]);
    const next = await reap({ ...width(500), JANITOR_MAX_RUN_ROWS: '0' });
    assert.deepEqual(next.output.stoppedBy, 'drained');
    assert.equal(next.output.deleted, 3, 'the two that went idle and the idle session created during pass 1');
    const second = await position();
    assert.equal(second?.pass, 2);
    assert.equal(second?.first_id, (all.find((id) => !idleAtStart.includes(id)) ?? 0) - 1);
    assert.equal(second?.end_id, late.at(-1)?.id);
    assert.equal(second?.finished, true);
    assert.deepEqual(await idleIds(), []);
  });

  test('shutdown stops between ranges, and the position is saved with every range', async () => {
    await reset();
    await insertSessions(
      db.pool,
      Array.from({ length: 500 }, (_, i) => ({ expiresIn: DAY, idleFor: i % 2 === 0 ? 2 * HOUR : 0 })),
    );
    const before = await remainingIds(db.pool);
    const controller = new AbortController();
    const { output } = await reap(width(40), { signal: controller.signal, onProgress: (p) => p.batches === 3 && controller.abort() });
    assert.deepEqual(output, { deleted: 60, batches: 3, stoppedBy: 'shutdown' });
    const at = await position();
    assert.equal(at?.last_id, (before[0] ?? 0) - 1 + 120);
    assert.equal(at?.pass_deleted, 60);
    assert.equal(at?.finished, false);
  });

  test('a position moved by another walker: the range statement deletes nothing, the walk goes on from where the position stands', async () => {
    await reset();
    const rows = await insertSessions(
      db.pool,
      Array.from({ length: 500 }, () => ({ expiresIn: DAY, idleFor: 2 * HOUR })),
    );
    let moved = false;
    // After the first range, "another walker" (another process) takes the next 100 ids (here: only
    // moves the position). onBatch waits for it, so that the move lands before the next range
    // under any load: a query sent from onBatch without waiting could land after the whole walk.
    const { output } = await reap(width(50), {
      onBatch: () => {
        if (moved) return;
        moved = true;
        const other = spawnSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            `import pg from 'pg'; const c = new pg.Client(process.env.URL); await c.connect(); await c.query(process.env.SQL, [process.env.KEY]); await c.end();`,
          ],
          {
            env: {
              ...process.env,
              URL: db.url,
              KEY: positionKey(TABLE),
              SQL: 'UPDATE session_janitor.reap_position SET last_id = last_id + 100 WHERE table_name = $1',
            },
            encoding: 'utf8',
          },
        );
        assert.equal(other.status, 0, other.stderr);
      },
    });
    assert.deepEqual(output.stoppedBy, 'drained');
    assert.equal(output.deleted, 400, 'the 100 ids the other walker took were left to it');
    assert.equal((await remainingIds(db.pool)).length, 100);
    assert.deepEqual(await position(), firstPassFinished(rows, 400));
  });

  test("a run works on one connection and gives it back with the server's synchronous_commit", async () => {
    await reset();
    await insertSessions(
      db.pool,
      Array.from({ length: 300 }, (_, i) => ({ expiresIn: DAY, idleFor: i % 2 === 0 ? 2 * HOUR : 0 })),
    );
    // The latency guard off: its probe borrows a second pooled connection for a moment (test/tasks/latency-guard.test.ts).
    const ctx = taskContext(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h', JANITOR_LATENCY_GUARD: 'off', ...width(50) }));
    let inUse = 0;
    try {
      const output = await reapIdle(ctx, { onBatch: () => (inUse = Math.max(inUse, ctx.pool.totalCount - ctx.pool.idleCount)) });
      assert.deepEqual(output, { deleted: 150, batches: 6, stoppedBy: 'drained' });
      assert.equal(inUse, 1);
      assert.equal(ctx.pool.idleCount, ctx.pool.totalCount);
      const clients = await Promise.all(Array.from({ length: ctx.pool.totalCount }, () => ctx.pool.connect()));
      try {
        for (const client of clients)
          assert.equal((await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit, 'on');
      } finally {
        for (const client of clients) client.release();
      }
    } finally {
      await ctx.pool.end();
    }
    assert.equal((await position())?.pass_deleted, 150);
  });

  test('a refresh that commits while the delete waits for its row keeps the row (EvalPlanQual re-check)', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [
      { expiresIn: DAY, idleFor: 2 * HOUR },
      { expiresIn: DAY, idleFor: 2 * HOUR }, // refreshed while the reaper waits for it
      { expiresIn: DAY, idleFor: 2 * HOUR },
      { expiresIn: DAY, idleFor: 2 * HOUR }, // updated (not refreshed) while the reaper waits: still idle
      { expiresIn: DAY, idleFor: 0 },
    ]);
    const [a, refreshed, c, touched, fresh] = rows;
    assert.ok(a && refreshed && c && touched && fresh);
    const refresher = new pg.Client({ connectionString: db.url });
    const toucher = new pg.Client({ connectionString: db.url });
    await refresher.connect();
    await toucher.connect();
    try {
      // Both transactions hold their row before the reaper's statement starts: its snapshot still
      // sees both rows idle, so it tries to delete them and has to wait.
      await refresher.query('BEGIN');
      await refresher.query('UPDATE auth.refresh_session SET last_used_at = now() WHERE id = $1', [refreshed.id]);
      await toucher.query('BEGIN');
      await toucher.query(`UPDATE auth.refresh_session SET user_agent = 'new-agent/2.0' WHERE id = $1`, [touched.id]);
      const holders = new Map([
        [await backendPid(refresher), refresher],
        [await backendPid(toucher), toucher],
      ]);
      const running = reap({ JANITOR_LOCK_TIMEOUT: '20s' });
      // Commit each holder only once the reaper is seen waiting for it.
      const deadline = Date.now() + 15_000;
      while (holders.size > 0) {
        assert.ok(Date.now() < deadline, 'the reaper never waited for the locked rows');
        for (const [pid, client] of holders) {
          const { rows: blocked } = await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid)) AND query LIKE '%reap_position%'`,
            [pid],
          );
          if ((blocked[0]?.n ?? 0) > 0) {
            await client.query('COMMIT');
            holders.delete(pid);
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const { output, lockTimeouts } = await running;
      assert.equal(lockTimeouts, 0, 'the fast statement waited and finished: no lock timeout, no skip');
      assert.deepEqual(output, { deleted: 3, batches: 1, stoppedBy: 'drained' });
      assert.deepEqual(await remainingIds(db.pool), [refreshed.id, fresh.id], 'the refresh won; the mere update did not make its row fresh');
    } finally {
      await refresher.end();
      await toucher.end();
    }
  });

  test('a row held past lock_timeout is skipped and the rest of its range goes; the next pass looks at it again', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [
      { expiresIn: DAY, idleFor: 2 * HOUR },
      { expiresIn: DAY, idleFor: 2 * HOUR }, // refreshed by a slow transaction
      { expiresIn: DAY, idleFor: 2 * HOUR }, // locked by a transaction that rolls back
      { expiresIn: DAY, idleFor: 2 * HOUR },
      { expiresIn: DAY, idleFor: 0 },
    ]);
    const [a, refreshed, rolledBack, d, fresh] = rows;
    assert.ok(a && refreshed && rolledBack && d && fresh);
    const refresher = new pg.Client({ connectionString: db.url });
    const locker = new pg.Client({ connectionString: db.url });
    await refresher.connect();
    await locker.connect();
    try {
      await refresher.query('BEGIN');
      await refresher.query('UPDATE auth.refresh_session SET last_used_at = now() WHERE id = $1', [refreshed.id]);
      await locker.query('BEGIN');
      await locker.query('SELECT 1 FROM auth.refresh_session WHERE id = $1 FOR UPDATE', [rolledBack.id]);
      const started = performance.now();
      const first = await reap({ JANITOR_LOCK_TIMEOUT: '100ms' });
      assert.ok(performance.now() - started < 5000, 'the reaper waited for the locks');
      assert.equal(first.lockTimeouts, 1);
      assert.deepEqual(first.output, { deleted: 2, batches: 1, stoppedBy: 'drained' });
      assert.deepEqual(await remainingIds(db.pool), [refreshed.id, rolledBack.id, fresh.id]);
      assert.equal((await position())?.finished, true);
      await refresher.query('COMMIT');
      await locker.query('ROLLBACK');
    } finally {
      await refresher.end();
      await locker.end();
    }
    const second = await reap();
    assert.equal(second.output.deleted, 1);
    assert.equal((await position())?.pass, 2);
    assert.deepEqual(await remainingIds(db.pool), [refreshed.id, fresh.id]);
  });

  for (const strategy of ['range', 'index'] as const) {
    for (const way of ['savepoint', 'two-lockers'] as const) {
      test(`${strategy}: a row held ${way === 'savepoint' ? 'inside a savepoint' : 'by two lockers (a MultiXact)'} does not stall the run; a run after the holders end reaps it`, async () => {
        await reset();
        if (strategy === 'index') await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
        try {
          const rows = await insertSessions(db.pool, [
            { expiresIn: DAY, idleFor: 2 * HOUR },
            { expiresIn: DAY, idleFor: 3 * HOUR },
            { expiresIn: DAY, idleFor: 4 * HOUR }, // held
            { expiresIn: DAY, idleFor: 5 * HOUR },
            { expiresIn: DAY, idleFor: 0 },
          ]);
          const [, , held, , fresh] = rows;
          assert.ok(held && fresh);
          const holders = await holdRow(db.url, held.id, way);
          try {
            const first = await reap({ JANITOR_LOCK_TIMEOUT: '100ms' });
            assert.deepEqual(first.output, { deleted: 3, batches: 1, stoppedBy: 'drained' });
            assert.deepEqual(await remainingIds(db.pool), [held.id, fresh.id]);
            if (strategy === 'range') assert.equal((await position())?.finished, true, 'the position moved past the range');
          } finally {
            await releaseAll(holders);
          }
          assert.equal((await reap()).output.deleted, 1);
          assert.deepEqual(await remainingIds(db.pool), [fresh.id]);
        } finally {
          await db.pool.query('DROP INDEX IF EXISTS auth.refresh_session_last_used_at_idx');
        }
      });
    }
  }

  test('the range statements walk the primary key: no sequential scan of the sessions', async () => {
    await reset();
    await insertBulkSessions(db.pool, 50_000, 0.4);
    await db.pool.query(`UPDATE auth.refresh_session SET last_used_at = now() - interval '2 hours' WHERE id % 5 = 0`);
    await db.pool.query('ANALYZE auth.refresh_session');
    const { rows } = await db.pool.query<{ lo: number }>('SELECT min(id) AS lo FROM auth.refresh_session');
    const lo = rows[0]?.lo ?? 0;
    const range = [positionKey(TABLE), 1, lo + 10_000, lo + 15_000, HOUR, 0];
    const cases = [
      { statement: reapRange(TABLE), values: range },
      { statement: reapRangeExceptHeld(TABLE), values: range },
      // The fallback after a second lock timeout (tasks/held-rows.ts).
      { statement: reapRangeCandidates(TABLE), values: [lo + 10_000, lo + 15_000, HOUR] },
      { statement: reapIds(TABLE), values: [Array.from({ length: 2500 }, (_, i) => lo + 10_000 + 2 * i), HOUR] },
    ];
    for (const { statement, values } of cases) {
      for (const generic of [false, true]) {
        const plan = await explain(statement, values, generic);
        const scans = sessionScans(plan);
        assert.ok(scans.length > 0, JSON.stringify(plan));
        assert.ok(
          scans.every((scan) => scan['Node Type'] !== 'Seq Scan'),
          `${statement.name} (generic: ${generic}) scans the table: ${JSON.stringify(plan)}`,
        );
        assert.deepEqual(sessionIndexes(plan), ['refresh_session_pkey'], `${statement.name} (generic: ${generic})`);
      }
    }
  });

  test('with an index on last_used_at: reaps through it (no sequential scan), same result, says so once in the log', async () => {
    await reset();
    const { log, lines } = capturingLogger('info');
    const base = taskContext(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h', ...width(10) }));
    const ctx: TaskContext = { ...base, log };
    let holder: pg.Client | undefined;
    try {
      assert.deepEqual(await detectStrategy(ctx), { kind: 'range' });
      await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
      assert.deepEqual(await detectStrategy(ctx), { kind: 'index', index: 'refresh_session_last_used_at_idx' });
      const specs = Array.from({ length: 6 }, () => MIXED).flat();
      const rows = await insertSessions(db.pool, specs);
      const locked = rows[0];
      assert.ok(locked);
      holder = await refreshInFlight(db.url, locked.id);
      // Batches of 10 rows through the index: a cursor over several batches, one locked row skipped.
      const output = await reapIdle(ctx);
      assert.deepEqual(output, { deleted: 23, batches: 3, stoppedBy: 'drained' });
      await holder.query('COMMIT');
      assert.deepEqual(
        await remainingIds(db.pool),
        rows.filter((_, i) => i === 0 || !MIXED[i % MIXED.length]?.idle).map((r) => r.id),
      );
      assert.equal((await counters(ctx)).counted, 23);
      assert.equal(await position(), undefined, 'the index path keeps no position');
      const again = await reapIdle(ctx);
      assert.deepEqual(again, { deleted: 0, batches: 1, stoppedBy: 'drained' });
      const said = lines.filter((line) => line.includes('refresh_session_last_used_at_idx'));
      assert.equal(said.length, 1, lines.join(''));

      await db.pool.query('TRUNCATE auth.refresh_session');
      await insertBulkSessions(db.pool, 20_000, 0.4);
      await db.pool.query(`UPDATE auth.refresh_session SET last_used_at = now() - interval '2 hours' WHERE id % 5 = 0`);
      await db.pool.query('ANALYZE auth.refresh_session');
      for (const generic of [false, true]) {
        const plan = await explain(reapThroughIndex(TABLE), [HOUR, 500, '-infinity', false], generic);
        assert.ok(
          sessionScans(plan).every((s) => s['Node Type'] !== 'Seq Scan'),
          `generic ${generic}: ${JSON.stringify(plan)}`,
        );
        assert.deepEqual(sessionIndexes(plan), ['refresh_session_last_used_at_idx', 'refresh_session_pkey'], `generic ${generic}: ${JSON.stringify(plan)}`);
      }
      const bulk = await reapIdle(ctx);
      assert.equal(bulk.deleted, 4000);
      assert.deepEqual(await idleIds(), []);

      // A partial index does not count: the planner cannot prove a now()-based cutoff implies it.
      await db.pool.query('DROP INDEX auth.refresh_session_last_used_at_idx');
      await db.pool.query(`CREATE INDEX refresh_session_last_used_partial_idx ON auth.refresh_session (last_used_at) WHERE last_used_at < '2000-01-01'`);
      assert.deepEqual(await detectStrategy(ctx), { kind: 'range' });
    } finally {
      await holder?.end();
      await base.pool.end();
      await db.pool.query('DROP INDEX IF EXISTS auth.refresh_session_last_used_at_idx, auth.refresh_session_last_used_partial_idx');
    }
  });

  test('--dry-run counts the idle sessions and deletes nothing', async () => {
    await reset();
    await insertSessions(db.pool, MIXED);
    const output = await reap({}, { dryRun: true });
    assert.equal(output.output.wouldDelete, 4);
    assert.equal(output.output.deleted, 0);
    assert.equal((await remainingIds(db.pool)).length, MIXED.length);
    assert.equal(await position(), undefined, 'a dry run leaves the position alone');
  });

  test('the command: --dry-run reports the count, a run prints a summary with the pass, and `off` says so and exits 0', async () => {
    await reset();
    await insertSessions(db.pool, MIXED);
    const env = { DATABASE_URL: db.url, JANITOR_IDLE_TIMEOUT: '1h', LOG_LEVEL: 'warn' };
    const dry = await runCli(['reap-idle', '--dry-run'], env).finished;
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^dry run: 4 sessions would be reaped/);
    assert.equal((await remainingIds(db.pool)).length, MIXED.length);

    const run = await runCli(['reap-idle'], env).finished;
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /reaped 4 idle sessions in 1 batches/);
    assert.match(run.stdout, /stopped by: drained/);
    assert.match(run.stdout, /pass 1 .*4 reaped in it.*finished/);
    assert.equal((await remainingIds(db.pool)).length, MIXED.length - 4);

    const off = await runCli(['reap-idle'], { ...env, JANITOR_IDLE_TIMEOUT: 'off' }).finished;
    assert.equal(off.code, 0, off.stderr);
    assert.match(off.stdout, /idle reaping is off \(JANITOR_IDLE_TIMEOUT=off\)/);
  });

  test('off: no consumer, and the schedule is removed; on: scheduled with JANITOR_REAP_CRON', async () => {
    const task = SCHEDULED_TASKS.find((t) => t.queue === QUEUES.reapIdle);
    assert.ok(task);
    assert.equal(task.cron(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: 'off' })), null, 'no consumer');
    assert.equal(task.cron(testConfig(db.url)), testConfig(db.url).reapCron);
    await assert.rejects(reap({ JANITOR_IDLE_TIMEOUT: 'off' }), /idle reaping is off/);

    const on = testConfig(db.url, { JANITOR_REAP_CRON: '15 */2 * * *', JANITOR_CRON_TZ: 'Europe/Berlin' });
    const boss = createBoss(on, db.url, { role: 'tool', migrate: false }, silentLogger());
    await boss.start();
    try {
      await ensureSchedules(boss, on);
      const scheduled = await boss.getSchedule(QUEUES.reapIdle);
      assert.equal(scheduled?.cron, '15 */2 * * *');
      assert.equal(scheduled?.timezone, 'Europe/Berlin');
      await ensureSchedules(boss, testConfig(db.url, { JANITOR_IDLE_TIMEOUT: 'off' }));
      assert.equal(await boss.getSchedule(QUEUES.reapIdle), null);
      assert.ok(await boss.getSchedule(QUEUES.purgeExpired), 'the purge keeps its schedule');
    } finally {
      await boss.stop({ graceful: false });
    }
  });

  async function explain(statement: { name: string; text: string }, values: unknown[], generic: boolean): Promise<unknown> {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      // A generic plan is what a prepared statement may settle on after five executions.
      await client.query(`SET LOCAL plan_cache_mode = '${generic ? 'force_generic_plan' : 'force_custom_plan'}'`);
      const { rows } = await client.query<{ 'QUERY PLAN': unknown }>({
        name: `explain_${statement.name}`,
        text: `EXPLAIN (FORMAT JSON) ${statement.text}`,
        values,
      });
      await client.query('ROLLBACK');
      return rows[0]?.['QUERY PLAN'];
    } finally {
      client.release();
    }
  }
});

async function backendPid(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]?.pid ?? 0;
}
