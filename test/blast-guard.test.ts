/**
 * The blast-radius guard (src/tasks/blast-guard.ts) on a real server, with exact rows left: it stops
 * a reap after the idle timeout went from 30d to 2h where most sessions were used in the last day,
 * and a purge after every row's timestamps moved a year into the past; it lets through a neglected
 * table's first purge (60% expired), a steady state, and a mass logout through a revocation. A stop
 * holds until `confirm` (recorded with the role and the reason) or other settings.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeEach, describe, test } from 'node:test';
import type { Config } from '../src/config.ts';
import type { RunOutput } from '../src/tasks/batching.ts';
import type { ClusterState } from '../src/cluster-state.ts';
import { purgeExpired } from '../src/tasks/purge-expired.ts';
import { reapIdle } from '../src/tasks/reap-idle.ts';
import { revoke } from '../src/tasks/revoke.ts';
import { insertSessions, taskContext, testConfig, useTestDatabase, type SessionSpec } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

/**
 * What the user checks of a run: rows deleted and why it stopped. Not its batch count, which the
 * adaptive size decides from the batches' durations (a loaded machine made one reap two batches).
 */
const outcome = ({ deleted, stoppedBy }: RunOutput) => ({ deleted, stoppedBy });

describe('the blast-radius guard', () => {
  const db = useTestDatabase();
  const count = async (where = 'true') => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM auth.refresh_session WHERE ${where}`)).rows[0]?.n;
  /** One run of `run` under `env`, on its own pool. */
  const withCtx = async <T>(env: Record<string, string>, fn: (ctx: ReturnType<typeof taskContext>) => Promise<T>): Promise<T> => {
    const ctx = taskContext(testConfig(db.url, { JANITOR_BLAST_RADIUS: '0.1', ...env }) satisfies Config);
    try {
      return await fn(ctx);
    } finally {
      await ctx.pool.end();
    }
  };
  beforeEach(async () => {
    await db.pool.query('DELETE FROM auth.refresh_session');
    await db.pool.query('DELETE FROM session_janitor.blast_guard');
  });

  test('a neglected table: the first purge deletes its 60% expired, spread over three months', async () => {
    const specs: SessionSpec[] = [
      ...Array.from({ length: 600 }, (_, i) => ({ expiresIn: -60 - i * 13_000, user: i % 50 })), // up to 90 days ago
      ...Array.from({ length: 400 }, (_, i) => ({ expiresIn: 3600 + i * 600, idleFor: 60, user: i % 50 })),
    ];
    await insertSessions(db.pool, specs);
    assert.deepEqual(outcome(await withCtx({}, (ctx) => purgeExpired(ctx))), { deleted: 600, stoppedBy: 'drained' });
    assert.equal(await count(), 400);
  });

  test('a steady state: each purge deletes what expired since the last one', async () => {
    await insertSessions(db.pool, [
      ...Array.from({ length: 900 }, (_, i) => ({ expiresIn: 86_400 + i, idleFor: 60, user: i % 30 })),
      ...Array.from({ length: 100 }, (_, i) => ({ expiresIn: 1 + (i % 2), idleFor: 60, user: i % 30 })), // expire within 2 s
      ...Array.from({ length: 20 }, (_, i) => ({ expiresIn: -30 - i, user: i % 30 })),
    ]);
    assert.equal((await withCtx({}, (ctx) => purgeExpired(ctx))).deleted, 20);
    await sleep(2500);
    assert.deepEqual(outcome(await withCtx({}, (ctx) => purgeExpired(ctx))), { deleted: 100, stoppedBy: 'drained' });
    assert.equal(await count(), 900);
  });

  test('a mass logout through a revocation deletes every session: revocations are not guarded', async () => {
    await insertSessions(
      db.pool,
      Array.from({ length: 500 }, (_, i) => ({ expiresIn: 86_400, user: i % 10 })),
    );
    assert.equal((await withCtx({}, (ctx) => purgeExpired(ctx))).stoppedBy, 'drained');
    const issuedBefore = (await db.pool.query<{ at: string }>(`SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows[0]?.at;
    assert.ok(issuedBefore);
    assert.deepEqual(await withCtx({}, (ctx) => revoke(ctx, { issuedBefore, reason: 'key-rotated' })), { revoked: 500 });
    assert.equal(await count(), 0);
  });

  test('the idle timeout lowered from 30d to 2h where most sessions were used in the last day: the reap stops until confirmed', async () => {
    await insertSessions(db.pool, [
      ...Array.from({ length: 800 }, (_, i) => ({ expiresIn: 20 * 86_400, idleFor: 3 * 3600 + i * 90, user: i % 40 })), // used 3 h to 23 h ago
      ...Array.from({ length: 200 }, (_, i) => ({ expiresIn: 20 * 86_400, idleFor: 60 + i, user: i % 40 })), // used in the last hour
      ...Array.from({ length: 10 }, (_, i) => ({ expiresIn: 20 * 86_400, idleFor: 40 * 86_400, user: i })), // idle for 40 days
    ]);
    assert.deepEqual(outcome(await withCtx({ JANITOR_IDLE_TIMEOUT: '30d' }, (ctx) => reapIdle(ctx))), { deleted: 10, stoppedBy: 'drained' });
    assert.deepEqual(outcome(await withCtx({ JANITOR_IDLE_TIMEOUT: '2h' }, (ctx) => reapIdle(ctx))), { deleted: 0, stoppedBy: 'blast-radius' });
    assert.equal(await count(), 1000);
    // It stays stopped, in every run, and status says so.
    assert.equal((await withCtx({ JANITOR_IDLE_TIMEOUT: '2h' }, (ctx) => reapIdle(ctx))).stoppedBy, 'blast-radius');
    const env = { DATABASE_URL: db.url, LOG_LEVEL: 'warn', JANITOR_IDLE_TIMEOUT: '2h' };
    const status = JSON.parse((await runCli(['status', '--json'], env).finished).stdout) as ClusterState;
    assert.deepEqual(
      status.blastRadiusStops.map((s) => [s.task, s.fraction]),
      [['reap-idle', 0.8]],
    );
    // The settings back to 30d: the stop is void, the reap runs (nothing is idle for 30 days).
    assert.deepEqual(outcome(await withCtx({ JANITOR_IDLE_TIMEOUT: '30d' }, (ctx) => reapIdle(ctx))), { deleted: 0, stoppedBy: 'drained' });
    // 2h again: stopped again; the operator confirms, recorded with the role and the reason.
    assert.equal((await withCtx({ JANITOR_IDLE_TIMEOUT: '2h' }, (ctx) => reapIdle(ctx))).stoppedBy, 'blast-radius');
    const confirm = await runCli(['confirm', 'reap-idle', '--reason', 'CHG-7: idle timeout 2h on purpose'], env).finished;
    assert.equal(confirm.code, 0, confirm.stderr);
    assert.match(
      confirm.stdout,
      /^confirmed reap-idle \(by \S+\): its next run deletes \(80\.0% of the table retroactively\): CHG-7: idle timeout 2h on purpose\n$/,
    );
    const { rows } = await db.pool.query<{ confirmed_by: string; confirmed_reason: string; role: string }>(
      'SELECT confirmed_by, confirmed_reason, current_user AS role FROM session_janitor.blast_guard WHERE task = $1',
      ['reap-idle'],
    );
    assert.equal(rows[0]?.confirmed_by, rows[0]?.role);
    assert.equal(rows[0]?.confirmed_reason, 'CHG-7: idle timeout 2h on purpose');
    assert.deepEqual(outcome(await withCtx({ JANITOR_IDLE_TIMEOUT: '2h' }, (ctx) => reapIdle(ctx))), { deleted: 800, stoppedBy: 'drained' });
    assert.equal(await count(), 200);
    assert.equal((await runCli(['confirm', 'reap-idle', '--reason', 'again'], env).finished).stdout, 'reap-idle has no blast-radius stop to confirm\n');
  });

  test("every row's timestamps a year in the past (a clock jump seen from the table): the purge stops", async () => {
    await insertSessions(db.pool, [
      ...Array.from({ length: 950 }, (_, i) => ({ expiresIn: 86_400 + i * 600, idleFor: 60, user: i % 40 })),
      ...Array.from({ length: 50 }, (_, i) => ({ expiresIn: -60 - i, user: i % 40 })),
    ]);
    assert.equal((await withCtx({}, (ctx) => purgeExpired(ctx))).deleted, 50);
    await db.pool.query(
      `UPDATE auth.refresh_session SET expires_at = expires_at - interval '1 year', last_used_at = last_used_at - interval '1 year', created_at = created_at - interval '1 year'`,
    );
    assert.deepEqual(outcome(await withCtx({}, (ctx) => purgeExpired(ctx))), { deleted: 0, stoppedBy: 'blast-radius' });
    assert.equal(await count(), 950);
  });
});
