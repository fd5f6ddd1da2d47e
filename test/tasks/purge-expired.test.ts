import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { purgeBatch, purgeBatchExceptHeld, purgeBound, purgeCandidates } from '../../src/db/sql/purge-expired.ts';
import { migrateOwnSchema } from '../../src/db/migrate.ts';
import { pauseTasks, resumeTasks } from '../../src/tasks/pause.ts';
import { purgeExpired } from '../../src/tasks/purge-expired.ts';
import {
  expiredAndLive,
  holdRow,
  insertBulkSessions,
  insertSessions,
  refreshInFlight,
  releaseAll,
  remainingIds,
  slowDeletes,
  taskContext,
  testConfig,
  useTestDatabase,
} from '../helpers/database.ts';
import { until } from '../helpers/wait.ts';

describe('purge-expired', () => {
  const db = useTestDatabase();
  const reset = () => db.pool.query('TRUNCATE auth.refresh_session, auth."user" CASCADE');

  async function purge(env: Record<string, string> = {}, signal?: AbortSignal, onBatch?: (batches: number) => void, batchRows: number[] = []) {
    const ctx = taskContext(testConfig(db.url, env));
    try {
      const output = await purgeExpired(ctx, {
        ...(signal ? { signal } : {}),
        onProgress: (p) => onBatch?.(p.batches),
        onBatch: (b) => batchRows.push(b.rows),
      });
      const metric = await ctx.metrics.sessionsDeleted.get();
      const errors = await ctx.metrics.errors.get();
      const stalled = await ctx.metrics.stalledRuns.get();
      return {
        output,
        stalled: stalled.values.find((v) => v.labels.task === 'purge-expired')?.value ?? 0,
        counted: metric.values.find((v) => v.labels.reason === 'expired')?.value ?? 0,
        lockTimeouts: errors.values.find((v) => v.labels.kind === 'lock-timeout')?.value ?? 0,
        batchTimeouts: errors.values.find((v) => v.labels.kind === 'batch-timeout')?.value ?? 0,
      };
    } finally {
      await ctx.pool.end();
    }
  }

  test('deletes exactly the expired rows, without a grace period', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [
      { expiresIn: -30 * 86_400 },
      { expiresIn: -60 },
      { expiresIn: -2 }, // just before the cutoff
      { expiresIn: 5 }, // just after it
      { expiresIn: 3600 },
      { expiresIn: 30 * 86_400 },
    ]);
    const { output, counted } = await purge({ JANITOR_PURGE_CONCURRENCY: '1' });
    assert.deepEqual(
      await remainingIds(db.pool),
      rows.slice(3).map((r) => r.id),
    );
    assert.deepEqual(output, { deleted: 3, batches: 1, stoppedBy: 'drained' });
    assert.equal(counted, 3);
  });

  test('keeps sessions within JANITOR_EXPIRED_GRACE of their expiry', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [
      { expiresIn: -7200 }, // past the 1h grace
      { expiresIn: -3605 }, // just past it
      { expiresIn: -3590 }, // just within it
      { expiresIn: -60 },
      { expiresIn: 60 },
    ]);
    const { output } = await purge({ JANITOR_EXPIRED_GRACE: '1h' });
    assert.deepEqual(
      await remainingIds(db.pool),
      rows.slice(2).map((r) => r.id),
    );
    assert.equal(output.deleted, 2);
  });

  test('without the latency guard a batch deletes at most 5000 rows (JANITOR_PURGE_BATCH_MAX_SIZE), however fast it goes: nothing tells it that nobody writes', async () => {
    await reset();
    await insertBulkSessions(db.pool, 15_000, 0.8);
    const batchRows: number[] = [];
    const { output } = await purge(
      { JANITOR_LATENCY_GUARD: 'off', JANITOR_BATCH_MAX_SIZE: '20000', JANITOR_BATCH_TARGET_MS: '10000' },
      undefined,
      undefined,
      batchRows,
    );
    assert.equal(output.deleted, 12_000);
    assert.equal(
      batchRows.reduce((a, b) => a + b, 0),
      12_000,
    );
    assert.ok(Math.max(...batchRows) <= 5000, `batches of ${batchRows.join(', ')} rows`);
    assert.ok(output.batches >= 3, `expected at least 3 batches, got ${output.batches}`);
    assert.equal((await expiredAndLive(db.pool)).expired, 0);
  });

  test("nobody writing, the next batch's bound is read on a spare connection while a batch deletes (the guard off: on the lane's own); the same rows go", async () => {
    // The backends that ran the purge's bound statements and its deletes. "Nobody" is the whole
    // server's (tasks/latency-guard.ts): up to three runs.
    const original = Reflect.get(pg.Client.prototype, 'query') as (...args: unknown[]) => unknown;
    const bounds = new Set<number>();
    const deletes = new Set<number>();
    pg.Client.prototype.query = function (this: pg.Client & { processID: number | null }, ...args: unknown[]) {
      const name = (args[0] as { name?: string } | undefined)?.name ?? '';
      if (this.processID !== null && name.startsWith('sj_purge_bound_')) bounds.add(this.processID);
      if (this.processID !== null && /^sj_purge_(from|after)_/.test(name)) deletes.add(this.processID);
      return original.apply(this, args);
    } as typeof pg.Client.prototype.query;
    const aside = () => [...bounds].filter((pid) => !deletes.has(pid)).length;
    const env = { JANITOR_BATCH_SIZE: '500', JANITOR_BATCH_MIN_SIZE: '500', JANITOR_BATCH_MAX_SIZE: '500', JANITOR_PURGE_CONCURRENCY: '1' };
    const run = async (extra: Record<string, string> = {}) => {
      await reset();
      await insertBulkSessions(db.pool, 10_000, 0.8);
      bounds.clear();
      deletes.clear();
      const { output } = await purge({ ...env, ...extra });
      assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: 8000, stoppedBy: 'drained' });
      assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 2000 });
    };
    try {
      const seen: number[] = [];
      for (let attempt = 0; attempt < 3 && (seen.at(-1) ?? 0) === 0; attempt++) {
        await run();
        seen.push(aside());
      }
      assert.ok((seen.at(-1) ?? 0) > 0, `bounds read beside the deletes' connection: ${seen.join(', ')} backends a run`);
      await run({ JANITOR_LATENCY_GUARD: 'off' });
      assert.deepEqual({ aside: aside(), deletes: deletes.size }, { aside: 0, deletes: 1 });
    } finally {
      Reflect.set(pg.Client.prototype, 'query', original);
    }
  });

  test('a batch past statement_timeout is tried again at half the size, until one fits; the run drains', async () => {
    await reset();
    await insertBulkSessions(db.pool, 400, 0.75);
    // 5 ms a deleted row: a batch of 200 takes 1 s, past 250 ms; one of 25 takes 125 ms, and the
    // smallest (10) 50 ms, a fifth of the timeout on a loaded machine (at 100 ms, a 10-row batch
    // once timed out in CI, and the run failed at the minimum size).
    const undo = await slowDeletes(db.pool, 0.005);
    try {
      const batchRows: number[] = [];
      const { output, batchTimeouts } = await purge(
        { JANITOR_STATEMENT_TIMEOUT: '250ms', JANITOR_BATCH_SIZE: '200', JANITOR_BATCH_MIN_SIZE: '10', JANITOR_PURGE_CONCURRENCY: '1' },
        undefined,
        undefined,
        batchRows,
      );
      assert.deepEqual({ deleted: output.deleted, stoppedBy: output.stoppedBy }, { deleted: 300, stoppedBy: 'drained' });
      assert.ok(batchTimeouts >= 1, 'no batch timed out');
      assert.ok(Math.max(...batchRows) <= 100, `batches of ${batchRows.join(', ')} rows`);
      assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 100 });
    } finally {
      await undo();
    }
  });

  test('drains a backlog of many batches on several lanes, ties at batch edges included', async () => {
    await reset();
    await insertBulkSessions(db.pool, 5000, 0.8);
    // 300 rows sharing one expires_at straddle several batch boundaries.
    await db.pool.query(
      `UPDATE auth.refresh_session SET expires_at = now() - interval '1 day' WHERE id IN (SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY id LIMIT 300)`,
    );
    const { output, counted } = await purge({
      JANITOR_BATCH_SIZE: '100',
      JANITOR_BATCH_MIN_SIZE: '100',
      JANITOR_BATCH_MAX_SIZE: '100',
      JANITOR_PURGE_CONCURRENCY: '3',
    });
    assert.equal(output.deleted, 4000);
    assert.equal(counted, 4000);
    assert.equal(output.stoppedBy, 'drained');
    assert.ok(output.batches >= 40, `expected at least 40 batches, got ${output.batches}`);
    assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 1000 });
  });

  // A mass logout (`UPDATE ... SET expires_at = now()`), an import, or expiry on a fixed grid: many
  // rows on one instant. No batch may take more than its cap plus the stated overshoot (a tenth).
  for (const { name, at, lanes } of [
    { name: '3,000 rows on one instant', at: "now() - interval '1 day'", lanes: '1' },
    { name: "3,000 rows at '-infinity'", at: "'-infinity'::timestamptz", lanes: '1' },
    { name: '3,000 rows mid-span, three lanes on twelve slices', at: 'NULL', lanes: '3' },
  ]) {
    test(`a tie is purged in batches of at most the cap: ${name}`, async () => {
      await reset();
      await insertBulkSessions(db.pool, 4200, 0.8);
      // With `at` NULL the tie sits in the middle of the purgeable span, where slices meet.
      await db.pool.query(
        `UPDATE auth.refresh_session
            SET expires_at = coalesce(${at}, (SELECT min(expires_at) + (now() - min(expires_at)) / 2 FROM auth.refresh_session))
          WHERE id IN (SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY id LIMIT 3000)`,
      );
      const batchRows: number[] = [];
      const { output, counted } = await purge(
        { JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MIN_SIZE: '100', JANITOR_BATCH_MAX_SIZE: '100', JANITOR_PURGE_CONCURRENCY: lanes },
        undefined,
        undefined,
        batchRows,
      );
      assert.ok(Math.max(...batchRows) <= 110, `largest batch ${Math.max(...batchRows)} rows (cap 100)`);
      assert.deepEqual({ deleted: output.deleted, counted, stoppedBy: output.stoppedBy }, { deleted: 3360, counted: 3360, stoppedBy: 'drained' });
      assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 840 });
    });
  }

  // The purge reads its pause in each batch's first statement (the bound, or a tie's ids).
  for (const shape of ['range', 'tie'] as const) {
    test(`a pause set while a run is under way stops it at a batch boundary, the rest left: ${shape === 'range' ? 'the range path' : 'inside a tie'}`, async () => {
      await reset();
      await insertBulkSessions(db.pool, 1000, 0.8);
      if (shape === 'tie') await db.pool.query(`UPDATE auth.refresh_session SET expires_at = now() - interval '1 day' WHERE expires_at < now()`);
      // 2 ms a deleted row: a batch of 50 takes 100 ms, and the pause commits during the second.
      const undo = await slowDeletes(db.pool, 0.002);
      let pausing: Promise<unknown> | undefined;
      try {
        const batchRows: number[] = [];
        // Rows the run had deleted when the pause committed: after it, only the batch in flight may
        // delete, even when the next batch's bound was read ahead before the pause (nobody writes).
        let deletedAtPause = Number.NaN;
        const { output } = await purge(
          { JANITOR_BATCH_SIZE: '50', JANITOR_BATCH_MIN_SIZE: '50', JANITOR_BATCH_MAX_SIZE: '50', JANITOR_PURGE_CONCURRENCY: '1' },
          undefined,
          (batches) => {
            if (batches === 1)
              pausing = pauseTasks(db.pool, ['purge-expired'], 60, 'a test').then(() => (deletedAtPause = batchRows.reduce((a, b) => a + b, 0)));
          },
          batchRows,
        );
        assert.ok(pausing, 'no batch ran');
        await pausing;
        assert.equal(output.stoppedBy, 'paused');
        assert.ok(output.batches >= 1 && output.batches <= 4, `${output.batches} batches of ${batchRows.join(', ')} rows`);
        assert.ok(
          output.deleted - deletedAtPause <= 50,
          `${output.deleted - deletedAtPause} rows went after the pause committed (batches ${batchRows.join(', ')})`,
        );
        assert.equal((await expiredAndLive(db.pool)).expired, 800 - output.deleted);
      } finally {
        await pausing?.catch(() => {});
        await resumeTasks(db.pool, ['purge-expired']);
        await undo();
      }
    });
  }

  test('the row budget stops a run early and the next run carries on', async () => {
    await reset();
    await insertBulkSessions(db.pool, 2000, 0.5);
    const env = {
      JANITOR_BATCH_SIZE: '100',
      JANITOR_BATCH_MIN_SIZE: '100',
      JANITOR_BATCH_MAX_SIZE: '100',
      JANITOR_PURGE_CONCURRENCY: '1',
      JANITOR_MAX_RUN_ROWS: '300',
    };
    const first = await purge(env);
    assert.deepEqual(first.output, { deleted: 300, batches: 3, stoppedBy: 'row-budget' });
    const second = await purge({ ...env, JANITOR_MAX_RUN_ROWS: '0' });
    assert.equal(second.output.deleted, 700);
    assert.equal(second.output.stoppedBy, 'drained');
  });

  test('the time budget stops a run early and the next run carries on', async () => {
    await reset();
    await insertBulkSessions(db.pool, 100_000, 1);
    const env = {
      JANITOR_BATCH_SIZE: '10',
      JANITOR_BATCH_MIN_SIZE: '10',
      JANITOR_BATCH_MAX_SIZE: '10',
      JANITOR_PURGE_CONCURRENCY: '1',
      JANITOR_MAX_RUN_SECONDS: '1',
    };
    const first = await purge(env);
    assert.equal(first.output.stoppedBy, 'time-budget');
    assert.ok(first.output.deleted > 0 && first.output.deleted < 100_000, `deleted ${first.output.deleted}`);
    const left = (await remainingIds(db.pool)).length;
    assert.equal(left, 100_000 - first.output.deleted);
    const second = await purge({ ...env, JANITOR_MAX_RUN_SECONDS: '240', JANITOR_BATCH_SIZE: '5000', JANITOR_BATCH_MAX_SIZE: '5000' });
    assert.equal(second.output.deleted, left);
    assert.equal((await remainingIds(db.pool)).length, 0);
  });

  test('shutdown stops between batches: no partial batch, every deleted row accounted for', async () => {
    await reset();
    await insertBulkSessions(db.pool, 3000, 1);
    const controller = new AbortController();
    const { output } = await purge(
      { JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MIN_SIZE: '100', JANITOR_BATCH_MAX_SIZE: '100', JANITOR_PURGE_CONCURRENCY: '1' },
      controller.signal,
      (batches) => batches === 5 && controller.abort(),
    );
    assert.deepEqual(output, { deleted: 500, batches: 5, stoppedBy: 'shutdown' });
    assert.equal((await remainingIds(db.pool)).length, 2500);
  });

  test('a row locked by another transaction does not stall the run; the next run purges it', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [{ expiresIn: -300 }, { expiresIn: -200 }, { expiresIn: -100 }, { expiresIn: 600 }]);
    const locked = rows[1];
    assert.ok(locked);
    const holder = await refreshInFlight(db.url, locked.id);
    try {
      const started = performance.now();
      const first = await purge({ JANITOR_LOCK_TIMEOUT: '100ms' });
      assert.ok(performance.now() - started < 5000, 'the purge waited for the lock');
      assert.equal(first.output.deleted, 2);
      assert.equal(first.output.stoppedBy, 'drained');
      assert.deepEqual(await remainingIds(db.pool), [locked.id, rows[3]?.id]);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    const second = await purge();
    assert.equal(second.output.deleted, 1);
    assert.deepEqual(await remainingIds(db.pool), [rows[3]?.id]);
  });

  for (const way of ['savepoint', 'two-lockers'] as const) {
    test(`a row held ${way === 'savepoint' ? 'inside a savepoint' : 'by two lockers (a MultiXact)'} does not stall the run; the next run purges it`, async () => {
      await reset();
      const rows = await insertSessions(db.pool, [{ expiresIn: -400 }, { expiresIn: -300 }, { expiresIn: -200 }, { expiresIn: -100 }, { expiresIn: 600 }]);
      const held = rows[2];
      assert.ok(held);
      const holders = await holdRow(db.url, held.id, way);
      try {
        const first = await purge({ JANITOR_LOCK_TIMEOUT: '100ms' });
        assert.deepEqual(first.output, { deleted: 3, batches: 1, stoppedBy: 'drained' });
        assert.deepEqual(await remainingIds(db.pool), [held.id, rows[4]?.id]);
      } finally {
        await releaseAll(holders);
      }
      assert.equal((await purge()).output.deleted, 1);
      assert.deepEqual(await remainingIds(db.pool), [rows[4]?.id]);
    });
  }

  test('many rows held in a savepoint: a batch spends at most 16 lock timeouts on them, leaves the rest for the next run, and completes', async () => {
    await reset();
    const rows = await insertSessions(
      db.pool,
      Array.from({ length: 64 }, (_, i) => ({ expiresIn: -1000 + i })),
    );
    // Every eighth row is held: finding all 8 by halving would take more than 16 timed-out tries.
    const holders = await holdRow(db.url, rows[0]?.id ?? 0, 'savepoint');
    const [holder] = holders;
    assert.ok(holder);
    await holder.query('SELECT 1 FROM auth.refresh_session WHERE id = ANY($1) FOR UPDATE', [rows.filter((_, i) => i % 8 === 0).map((r) => r.id)]);
    try {
      const first = await purge({ JANITOR_LOCK_TIMEOUT: '20ms' });
      assert.equal(first.output.stoppedBy, 'drained');
      assert.equal(first.output.batches, 1);
      assert.equal(first.lockTimeouts, 2 + 16, 'the batch, its retry without held rows, then 16 tries by id');
      assert.ok(first.output.deleted > 0 && first.output.deleted < 56, `deleted ${first.output.deleted}`);
      assert.equal((await remainingIds(db.pool)).length, 64 - first.output.deleted);
    } finally {
      await releaseAll(holders);
    }
    await purge();
    assert.deepEqual(await remainingIds(db.pool), []);
  });

  test('a row held inside a savepoint within a tie is left for the next run; the tie walk goes past it', async () => {
    await reset();
    await insertBulkSessions(db.pool, 400, 0.75);
    await db.pool.query(`UPDATE auth.refresh_session SET expires_at = now() - interval '1 day' WHERE expires_at < now()`);
    const { rows } = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY ctid OFFSET 150 LIMIT 1');
    const held = rows[0]?.id ?? 0;
    const holders = await holdRow(db.url, held, 'savepoint');
    try {
      const batchRows: number[] = [];
      const first = await purge(
        { JANITOR_LOCK_TIMEOUT: '50ms', JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MIN_SIZE: '100', JANITOR_BATCH_MAX_SIZE: '100' },
        undefined,
        undefined,
        batchRows,
      );
      assert.deepEqual({ deleted: first.output.deleted, stoppedBy: first.output.stoppedBy }, { deleted: 299, stoppedBy: 'drained' });
      assert.ok(Math.max(...batchRows) <= 110, `batches of ${batchRows.join(', ')} rows`);
      const left = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE expires_at < now()');
      assert.deepEqual(
        left.rows.map((r) => r.id),
        [held],
      );
    } finally {
      await releaseAll(holders);
    }
    assert.equal((await purge()).output.deleted, 1);
    assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 100 });
  });

  /** Holds every fifth of the first `first` purgeable rows in a savepoint (not seen by the first retry). */
  async function holdEveryFifth(first: number) {
    const { rows } = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY expires_at, id LIMIT $1', [
      first,
    ]);
    const ids = rows.filter((_, i) => i % 5 === 0).map((r) => r.id);
    const holders = await holdRow(db.url, ids[0] ?? 0, 'savepoint');
    await holders[0]?.query('SELECT 1 FROM auth.refresh_session WHERE id = ANY($1) FOR UPDATE', [ids]);
    return { holders, ids, firstBatch: rows.map((r) => r.id) };
  }

  test('held rows in the first batch take at most half the run: a long lock_timeout still lets the run purge the rest', async () => {
    await reset();
    await insertBulkSessions(db.pool, 2010, 2000 / 2010);
    // 16 lock timeouts of 300 ms, plus the two before them, outlast the whole 4 s run.
    const { holders, ids, firstBatch } = await holdEveryFifth(100);
    try {
      const { output, stalled, lockTimeouts } = await purge({
        JANITOR_LOCK_TIMEOUT: '300ms',
        JANITOR_MAX_RUN_SECONDS: '4',
        JANITOR_BATCH_SIZE: '100',
        JANITOR_BATCH_MIN_SIZE: '100',
        JANITOR_BATCH_MAX_SIZE: '100',
      });
      const left = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY id');
      const outside = left.rows.map((r) => r.id).filter((id) => !firstBatch.includes(id));
      assert.deepEqual(outside, [], `every purgeable row after the first batch is gone: ${JSON.stringify({ output, lockTimeouts })}`);
      assert.ok(output.deleted >= 1900, `deleted ${output.deleted} of 2000`);
      assert.equal(stalled, 0);
      for (const id of ids)
        assert.ok(
          left.rows.some((r) => r.id === id),
          `held row ${id} stays`,
        );
    } finally {
      await releaseAll(holders);
    }
  });

  test('a run that deletes nothing while rows are left is counted in session_janitor_stalled_runs_total', async () => {
    await reset();
    await insertBulkSessions(db.pool, 60, 50 / 60);
    const holders = await holdRow(db.url, 0, 'savepoint');
    await holders[0]?.query('SELECT 1 FROM auth.refresh_session WHERE expires_at < now() FOR UPDATE');
    try {
      const { output, stalled } = await purge({ JANITOR_LOCK_TIMEOUT: '50ms' });
      assert.equal(output.deleted, 0);
      assert.equal(stalled, 1);
      assert.deepEqual(await expiredAndLive(db.pool), { expired: 50, live: 10 });
    } finally {
      await releaseAll(holders);
    }
    const after = await purge();
    assert.deepEqual({ deleted: after.output.deleted, stalled: after.stalled }, { deleted: 50, stalled: 0 });
  });

  test('after the worker migrated its schema on the same pool, a held row still costs only lock_timeout', async () => {
    await reset();
    const rows = await insertSessions(db.pool, [{ expiresIn: -300 }, { expiresIn: -200 }, { expiresIn: -100 }]);
    const held = rows[1];
    assert.ok(held);
    const holders = await holdRow(db.url, held.id, 'savepoint');
    const ctx = taskContext(testConfig(db.url));
    let run: ReturnType<typeof purgeExpired> | undefined;
    try {
      // The worker migrates on start with its own pool (install.ts); the purge then checks out the
      // connection the migration used.
      await migrateOwnSchema(ctx.pool, ctx.config);
      run = purgeExpired(ctx);
      const stalled = await Promise.race([run.then(() => false), new Promise<boolean>((resolve) => setTimeout(resolve, 15_000, true))]);
      assert.equal(stalled, false, 'the purge still waited for the held row after 15 s');
      assert.deepEqual(await run, { deleted: 2, batches: 1, stoppedBy: 'drained' });
      assert.deepEqual(await remainingIds(db.pool), [held.id]);
    } finally {
      await releaseAll(holders);
      await run?.catch(() => undefined);
      await ctx.pool.end();
    }
  });

  test('a connection the server ends while a run holds it fails the run, not the process; the next run purges', async () => {
    await reset();
    await insertBulkSessions(db.pool, 1000, 1);
    let batches = 0;
    // A 1 % duty cycle: between two batches the lane's connection idles, still checked out. The
    // latency guard is off: its probe's pooled connection would be one more of the application's.
    const failed = assert.rejects(
      purge(
        { JANITOR_BATCH_SIZE: '10', JANITOR_BATCH_MIN_SIZE: '10', JANITOR_BATCH_MAX_SIZE: '10', JANITOR_PURGE_DUTY_CYCLE: '1', JANITOR_LATENCY_GUARD: 'off' },
        undefined,
        (b) => (batches = b),
      ),
    );
    await until('a batch', async () => batches > 0, 15_000, 10);
    const { rows } = await db.pool.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'session-janitor'`,
    );
    assert.equal(rows.length, 1, 'the lane has one connection');
    // Without a listener of the task's, the dying client's 'error' event is an uncaught exception: this file fails.
    await failed;
    await purge();
    assert.deepEqual(await expiredAndLive(db.pool), { expired: 0, live: 0 });
  });

  test('--dry-run counts and deletes nothing', async () => {
    await reset();
    await insertSessions(db.pool, [{ expiresIn: -10 }, { expiresIn: -20 }, { expiresIn: 20 }]);
    const ctx = taskContext(testConfig(db.url));
    try {
      const output = await purgeExpired(ctx, { dryRun: true });
      assert.equal(output.wouldDelete, 2);
      assert.equal(output.deleted, 0);
    } finally {
      await ctx.pool.end();
    }
    assert.equal((await remainingIds(db.pool)).length, 3);
  });

  test('batch statements walk the expires_at index: no sequential scan, no sort', async () => {
    await reset();
    await insertBulkSessions(db.pool, 50_000, 0.4);
    await db.pool.query('ANALYZE auth.refresh_session');
    const table = { schema: 'auth', name: 'refresh_session' };
    // The bound statement takes the batch size as $4, the deletes the bound it read.
    const bound = (await db.pool.query<{ b: string }>("SELECT (now() - interval '1 hour')::text AS b")).rows[0]?.b;
    const cases = [
      { statement: purgeBound(table, true), values: ['-infinity', 'infinity', 0, 5000, 501, 'purge-expired'] },
      { statement: purgeBound(table, false), values: ['-infinity', 'infinity', 0, 5000, 501, 'purge-expired'] },
      { statement: purgeBatch(table, true), values: ['-infinity', 'infinity', 0, bound] },
      { statement: purgeBatch(table, false), values: ['-infinity', 'infinity', 0, bound] },
      { statement: purgeBatchExceptHeld(table, true), values: ['-infinity', 'infinity', 0, bound] },
      { statement: purgeCandidates(table, false), values: ['-infinity', 'infinity', 0, bound] },
    ];
    for (const { statement, values } of cases) {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        // A generic plan is what a prepared statement settles on after five executions.
        await client.query("SET LOCAL plan_cache_mode = 'force_generic_plan'");
        await client.query({ name: `explain_${statement.name}`, text: `EXPLAIN (FORMAT JSON) ${statement.text}`, values });
        const { rows } = await client.query<{ 'QUERY PLAN': unknown }>({
          name: `explain_${statement.name}`,
          text: `EXPLAIN (FORMAT JSON) ${statement.text}`,
          values,
        });
        const plan = JSON.stringify(rows[0]?.['QUERY PLAN']);
        assert.doesNotMatch(plan, /"Seq Scan"/, `${statement.name} scans the table`);
        assert.doesNotMatch(plan, /"Node Type":"Sort"/, `${statement.name} sorts`);
        assert.match(plan, /refresh_session_expires_at_idx/, `${statement.name} does not use the expires_at index`);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
    }
  });
});
