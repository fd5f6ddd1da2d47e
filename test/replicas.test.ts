/**
 * Several replicas: three worker processes on one database, a large backlog (expired, idle, both,
 * live, many users) and a stream of revocations (overlapping users, jtis of rows the purge and the
 * reaper are deleting at the same moment) enqueued while the scheduled purge and reap run.
 *
 * After one scheduled tick of each: exactly the live, non-idle, non-revoked rows remain (row for
 * row); the jobs' outputs add up to the rows gone (nothing deleted twice, nothing lost); every
 * revocation completed; no deadlock (logs, job outputs, pg_stat_database); each schedule produced
 * one job per minute across the three replicas; every replica stops cleanly on SIGTERM.
 *
 * Lock contention on one row (the purge and the reaper skip a locked row and take it on a later run,
 * a revocation waits for it and deletes it) is proven row by row in test/tasks/*.test.ts; here the
 * replicas and the revocations delete overlapping rows at the same time, and the count of
 * revocation statements retried after a lock timeout is reported.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PgBoss } from 'pg-boss';
import { createBoss } from '../src/boss.ts';
import { enqueueRevocation } from '../src/client.ts';
import { QUEUES } from '../src/queues.ts';
import type { RevokeRequest } from '../src/revoke-request.ts';
import pg from 'pg';
import { createTestDatabase, holdRow, releaseAll, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';
import { runCli, type Running } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

const USERS = 2000;
/** Users the revocations pick from: overlapping requests. */
const HOT_USERS = 300;
const EXPIRED = 90_000;
const EXPIRED_AND_IDLE = 10_000;
const IDLE = 20_000;
const LIVE = 20_000;

interface SnapshotRow {
  readonly id: number;
  readonly user_id: number;
  readonly jti: string;
  readonly expired: boolean;
  readonly idle: boolean;
  /** created_at before OLD_INSTANT. */
  readonly old: boolean;
}

interface JobRow {
  readonly id: string;
  readonly name: string;
  readonly state: string;
  readonly minute: string;
  readonly output: { deleted?: number; batches?: number; stoppedBy?: string; revoked?: number } | null;
  readonly output_text: string | null;
}

/** A small deterministic generator: the same revocations on every run. */
function lcg(seed: number) {
  let state = seed;
  const next = () => (state = (state * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
  const int = (n: number) => Math.floor(next() * n);
  return { int, pick: <T>(items: readonly T[]): T => items[int(items.length)] as T };
}

describe('three replicas', () => {
  let db: TestDatabase;
  let producer: PgBoss;
  before(async () => {
    db = await createTestDatabase();
    producer = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
    await producer.start();
  });
  after(async () => {
    await producer?.stop({ graceful: false });
    await db?.drop();
  });

  test('a backlog and a revocation stream: exact deletes, one job per tick, no deadlock', { timeout: 240_000 }, async (t) => {
    // --- the backlog: every row far from its cutoff, so that no row changes class during the test.
    await db.pool.query(`INSERT INTO auth."user" (email) SELECT 'r-' || g || '@example.invalid' FROM generate_series(1, $1::int) g`, [USERS]);
    await db.pool.query(
      `WITH users AS (SELECT array_agg(id ORDER BY id) AS ids FROM auth."user")
       INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at)
       SELECT users.ids[1 + g % $5::int],
              now() - (g % 240) * interval '1 hour',
              CASE WHEN g <= $1::int THEN now() - interval '10 minutes'                   -- expired, used lately
                   WHEN g <= $1::int + $2::int THEN now() - interval '2 hours'            -- expired and idle
                   WHEN g <= $1::int + $2::int + $3::int THEN now() - (2 + g % 500) * interval '1 hour' -- idle
                   ELSE now() - (g % 1800) * interval '1 second' END,                     -- live
              CASE WHEN g <= $1::int + $2::int THEN now() - (1 + g % 86400) * interval '1 second'
                   ELSE now() + interval '30 days' END
         FROM users, generate_series(1, $1::int + $2::int + $3::int + $4::int) g`,
      [EXPIRED, EXPIRED_AND_IDLE, IDLE, LIVE, USERS],
    );
    const { rows: clock } = await db.pool.query<{ old: string }>(
      `SELECT to_char((now() - interval '120 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS old`,
    );
    const oldInstant = clock[0]?.old;
    assert.ok(oldInstant);
    const { rows: snapshot } = await db.pool.query<SnapshotRow>(
      `SELECT id, user_id, jti::text, expires_at < now() AS expired, last_used_at < now() - interval '1 hour' AS idle, created_at < $1::timestamptz AS old
         FROM auth.refresh_session ORDER BY id`,
      [oldInstant],
    );
    assert.equal(snapshot.length, EXPIRED + EXPIRED_AND_IDLE + IDLE + LIVE);
    const userIds = [...new Set(snapshot.map((r) => r.user_id))].sort((a, b) => a - b);
    const hotUsers = userIds.slice(0, HOT_USERS);
    const hot = new Set(hotUsers);
    const hotRows = snapshot.filter((r) => hot.has(r.user_id));
    const { rows: deadlocksBefore } = await db.pool.query<{ n: string }>(
      `SELECT deadlocks::text AS n FROM pg_stat_database WHERE datname = current_database()`,
    );

    // --- three replicas
    const env = {
      DATABASE_URL: db.url,
      JANITOR_METRICS_PORT: '0',
      JANITOR_PURGE_CRON: '* * * * *',
      JANITOR_REAP_CRON: '* * * * *',
      JANITOR_IDLE_TIMEOUT: '1h',
      // Small fixed batches: the purge takes hundreds of batches (about a second or two), the
      // reaper hundreds of ranges, and the revocations land in the middle of them.
      JANITOR_BATCH_SIZE: '200',
      JANITOR_BATCH_MIN_SIZE: '200',
      JANITOR_BATCH_MAX_SIZE: '200',
      // Revocation retries (lock timeouts, deadlocks) are logged at debug: the log scan sees them.
      LOG_LEVEL: 'debug',
      // Each replica evaluates the schedules every second: the first tick of each comes as soon as
      // one replica has registered them, and every later pass (of any replica) sends the minute's
      // occurrence again, which must stay one job.
      JANITOR_SCHEDULE_CHECK_INTERVAL: '1s',
    };
    const replicas: Running[] = [runCli(['start'], env), runCli(['start'], env), runCli(['start'], env)];
    const rng = lcg(42);
    const sent: Array<{ id: string; request: RevokeRequest }> = [];
    try {
      // The stream starts with the replicas (the first tick may come before the last replica is up),
      // so that it runs during the first scheduled runs.
      let started = false;
      let startFailure: Error | undefined;
      const allStarted = Promise.all(replicas.map((r) => r.waitFor('session-janitor worker started', 60_000))).then(
        () => void (started = true),
        (error: unknown) => void (startFailure = error instanceof Error ? error : new Error(`a replica did not start: ${String(error)}`)),
      );

      const scheduled = async (queue: string) =>
        (
          await db.pool.query<JobRow>(
            `SELECT id, name, state::text, to_char(date_trunc('minute', created_on), 'HH24:MI') AS minute, output, output::text AS output_text
               FROM pgboss.job WHERE name = $1 ORDER BY created_on`,
            [queue],
          )
        ).rows;
      const firstDone = async (queue: string) => {
        const jobs = await scheduled(queue);
        const first = jobs[0];
        if (first !== undefined && (first.state === 'failed' || first.state === 'cancelled')) assert.fail(`${queue}: ${first.state} ${first.output_text}`);
        return first?.state === 'completed' && first;
      };

      // --- the revocation stream, while the first ticks come and run
      const deadline = Date.now() + 100_000;
      let purgeDone: JobRow | false = false;
      let reapDone: JobRow | false = false;
      for (let i = 0; !(started && purgeDone && reapDone && sent.length >= 40); i += 1) {
        if (startFailure !== undefined) throw startFailure;
        if (Date.now() > deadline)
          assert.fail(`no completed scheduled tick of each queue within the wait: purge ${JSON.stringify(purgeDone)}, reap ${JSON.stringify(reapDone)}`);
        const request = revocation(i);
        // Both enqueue paths of the client: boss.send, and the SQL function through a pool.
        const id = await enqueueRevocation(i % 2 === 0 ? producer : db.pool, request);
        assert.ok(id);
        sent.push({ id, request });
        await sleep(100);
        purgeDone = purgeDone || (await firstDone(QUEUES.purgeExpired));
        reapDone = reapDone || (await firstDone(QUEUES.reapIdle));
      }
      await allStarted;
      assert.ok(purgeDone && reapDone);
      assert.ok((purgeDone.output?.batches ?? 0) >= 100, `the purge took ${purgeDone.output?.batches} batches`);

      // --- every revocation completes
      const ids = sent.map((s) => s.id);
      const revokeJobs = await until(
        'every revocation to complete',
        async () => {
          const { rows } = await db.pool.query<JobRow>(
            `SELECT id, state::text, output, output::text AS output_text FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`,
            [QUEUES.revoke, ids],
          );
          const failed = rows.find((r) => r.state === 'failed' || r.state === 'cancelled');
          if (failed) assert.fail(`revocation ${failed.id} ${failed.state}: ${failed.output_text}`);
          return rows.length === ids.length && rows.every((r) => r.state === 'completed') && rows;
        },
        60_000,
      );
      // A later tick may be running now: wait for the scheduled queues to be idle before stopping.
      await until(
        'the scheduled queues to be idle',
        async () => {
          const { rows } = await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pgboss.job WHERE name = ANY($1::text[]) AND state IN ('created', 'active', 'retry')`,
            [[QUEUES.purgeExpired, QUEUES.reapIdle]],
          );
          return rows[0]?.n === 0;
        },
        60_000,
      );
      const outputBeforeStop = replicas.map((r) => r.output());

      // --- clean stop
      for (const r of replicas) r.child.kill('SIGTERM');
      const finished = await Promise.all(replicas.map((r) => r.finished));
      for (const [i, f] of finished.entries()) assert.equal(f.code, 0, `replica ${i} exited ${f.code} ${f.signal}:\n${(f.stdout + f.stderr).slice(-3000)}`);

      // --- row for row: exactly the live, non-idle, non-revoked rows remain
      const revokedIds = revokedBy(
        sent.map((s) => s.request),
        snapshot,
        oldInstant,
      );
      const expected = snapshot.filter((r) => !r.expired && !r.idle && !revokedIds.has(r.id)).map((r) => r.id);
      const { rows: left } = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session ORDER BY id');
      const remaining = left.map((r) => r.id);
      const remainingSet = new Set(remaining);
      const expectedSet = new Set(expected);
      const missing = expected.filter((id) => !remainingSet.has(id));
      const extra = remaining.filter((id) => !expectedSet.has(id));
      assert.deepEqual(
        { missing: missing.slice(0, 20), extra: extra.slice(0, 20), counts: [missing.length, extra.length] },
        { missing: [], extra: [], counts: [0, 0] },
      );
      assert.ok(expected.length > LIVE / 2 && expected.length < LIVE, `a meaningful share revoked: ${LIVE - expected.length} of the live rows`);
      assert.ok(
        hotRows.some((r) => revokedIds.has(r.id) && (r.expired || r.idle)),
        'some revocations raced the purge or the reaper for the same rows',
      );

      // --- the outputs add up: every row gone was reported by exactly one job
      const purges = await scheduled(QUEUES.purgeExpired);
      const reaps = await scheduled(QUEUES.reapIdle);
      for (const job of [...purges, ...reaps]) {
        assert.equal(job.state, 'completed', `${job.name} ${job.id}: ${job.output_text}`);
        assert.equal(job.output?.stoppedBy, 'drained', `${job.name} ${job.id}: ${job.output_text}`);
      }
      const sum = (jobs: readonly JobRow[], key: 'deleted' | 'revoked') => jobs.reduce((n, j) => n + (j.output?.[key] ?? 0), 0);
      const purged = sum(purges, 'deleted');
      const reaped = sum(reaps, 'deleted');
      const revokedRows = sum(revokeJobs, 'revoked');
      assert.equal(purged + reaped + revokedRows, snapshot.length - remaining.length, `purged ${purged} + reaped ${reaped} + revoked ${revokedRows}`);

      // --- the stream ran during the scheduled runs
      const { rows: overlap } = await db.pool.query<{ queue: string; during: number; seconds: number }>(
        `SELECT s.name AS queue, extract(epoch FROM s.completed_on - s.started_on)::float8 AS seconds,
                (SELECT count(*)::int FROM pgboss.job r WHERE r.name = $1 AND r.id = ANY($2::uuid[]) AND r.created_on BETWEEN s.started_on AND s.completed_on) AS during
           FROM pgboss.job s WHERE s.id = ANY($3::uuid[])`,
        [QUEUES.revoke, ids, [purgeDone.id, reapDone.id]],
      );
      for (const o of overlap) assert.ok(o.during >= 1, `no revocation was enqueued during the ${o.queue} run (${o.seconds} s)`);
      const retried = outputBeforeStop
        .join('\n')
        .split('\n')
        .filter((line) => line.includes('revocation statement retried')).length;
      t.diagnostic(
        `${sent.length} revocations (${revokedRows} rows), purge ${purged} rows in ${purgeDone.output?.batches} batches, reap ${reaped}; during the runs: ${JSON.stringify(overlap)}; revocation statements retried: ${retried}`,
      );

      // --- one job per schedule tick, across the three replicas
      for (const jobs of [purges, reaps]) {
        const perMinute = new Map<string, number>();
        for (const job of jobs) perMinute.set(job.minute, (perMinute.get(job.minute) ?? 0) + 1);
        assert.ok(jobs.length >= 1);
        assert.deepEqual(
          [...perMinute.values()].filter((n) => n !== 1),
          [],
          `${jobs[0]?.name}: jobs per minute ${JSON.stringify([...perMinute])}`,
        );
      }

      // --- no deadlock, no error: logs, stored outputs, the server's own count; nothing dead-lettered
      const logs = finished.map((f) => f.stdout + f.stderr).join('\n');
      assert.doesNotMatch(logs, /40P01|deadlock/i);
      const errors = outputBeforeStop
        .join('\n')
        .split('\n')
        .filter((line) => /"level":"(error|fatal)"/.test(line));
      assert.deepEqual(errors, [], "error lines in the replicas' logs");
      const { rows: stored } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE output::text ~* '40P01|deadlock'`);
      assert.equal(stored[0]?.n, 0);
      const { rows: dead } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [QUEUES.deadLetter]);
      assert.equal(dead[0]?.n, 0, 'jobs in the dead-letter queue');
      await sleep(1500); // the server's statistics are flushed about once a second
      const { rows: deadlocksAfter } = await db.pool.query<{ n: string }>(
        `SELECT deadlocks::text AS n FROM pg_stat_database WHERE datname = current_database()`,
      );
      assert.equal(deadlocksAfter[0]?.n, deadlocksBefore[0]?.n, 'deadlocks detected by the server');
    } finally {
      for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    }

    /** The i-th revocation of the stream: every selector but issuedBefore alone, on the hot users. */
    function revocation(i: number): RevokeRequest {
      const reason = 'replicas-test';
      const row = () => rng.pick(hotRows);
      switch (i % 5) {
        case 0:
          return { userId: rng.pick(hotUsers), reason };
        case 1:
          return { userIds: Array.from({ length: 20 }, () => rng.pick(hotUsers)), reason };
        case 2:
          // Rows of every class: some are being purged or reaped right now.
          return { jtis: Array.from({ length: 10 }, () => row().jti), reason };
        case 3: {
          const keep = row();
          return { userId: keep.user_id, exceptJti: keep.jti, reason };
        }
        default:
          return { userId: rng.pick(hotUsers), issuedBefore: oldInstant ?? '', reason };
      }
    }
  });
});

describe('three replicas beside an auth service that holds rows in savepoints and by two lockers', () => {
  let db: TestDatabase;
  after(async () => {
    await db?.drop();
  });

  test(
    'the scheduled runs complete (drained, never retried or dead-lettered), keep every held row, and a later run takes them',
    { timeout: 300_000 },
    async (t) => {
      db = await createTestDatabase();
      await db.pool.query(`INSERT INTO auth."user" (email) SELECT 'h-' || g || '@example.invalid' FROM generate_series(1, 500) g`);
      // 20,000 expired, 5,000 idle, 5,000 live.
      await db.pool.query(
        `WITH users AS (SELECT array_agg(id ORDER BY id) AS ids FROM auth."user")
       INSERT INTO auth.refresh_session (user_id, last_used_at, expires_at)
       SELECT users.ids[1 + g % 500],
              CASE WHEN g <= 20000 THEN now() - interval '10 minutes' WHEN g <= 25000 THEN now() - interval '3 hours' ELSE now() END,
              CASE WHEN g <= 20000 THEN now() - (1 + g % 3600) * interval '1 second' ELSE now() + interval '30 days' END
         FROM users, generate_series(1, 30000) g`,
      );
      const { rows: classes } = await db.pool.query<{ id: number; kind: 'expired' | 'idle' | 'live' }>(
        `SELECT id, CASE WHEN expires_at < now() THEN 'expired' WHEN last_used_at < now() - interval '1 hour' THEN 'idle' ELSE 'live' END AS kind
         FROM auth.refresh_session ORDER BY id`,
      );
      const live = classes.filter((r) => r.kind === 'live').map((r) => r.id);
      // Every 4000th expired and every 1250th idle row is held for the whole first tick of each schedule:
      // half inside a savepoint (a subtransaction's lock), half by two lockers at once (a MultiXact).
      const targets = [...classes.filter((r) => r.kind === 'expired' && r.id % 4000 === 7), ...classes.filter((r) => r.kind === 'idle' && r.id % 1250 === 3)];
      assert.ok(targets.length >= 8, `${targets.length} rows to hold`);
      const holders: pg.Client[] = [];
      for (const [i, row] of targets.entries()) holders.push(...(await holdRow(db.url, row.id, i % 2 === 0 ? 'savepoint' : 'two-lockers')));
      const held = targets.map((r) => r.id).sort((a, b) => a - b);

      const env = {
        DATABASE_URL: db.url,
        JANITOR_METRICS_PORT: '0',
        JANITOR_PURGE_CRON: '* * * * *',
        JANITOR_REAP_CRON: '* * * * *',
        JANITOR_IDLE_TIMEOUT: '1h',
        JANITOR_BATCH_SIZE: '500',
        JANITOR_BATCH_MIN_SIZE: '500',
        JANITOR_BATCH_MAX_SIZE: '500',
        // The first tick as soon as the schedules are registered (every pass sends the minute's occurrence).
        JANITOR_SCHEDULE_CHECK_INTERVAL: '1s',
        // Each held row costs a run about a dozen lock timeouts (tasks/held-rows.ts); what is asserted
        // here does not depend on their length, so they are short.
        JANITOR_LOCK_TIMEOUT: '50ms',
      };
      const replicas: Running[] = [runCli(['start'], env), runCli(['start'], env), runCli(['start'], env)];
      try {
        await Promise.all(replicas.map((r) => r.waitFor('session-janitor worker started', 60_000)));
        const jobs = async () =>
          (
            await db.pool.query<{
              name: string;
              state: string;
              retry_count: number;
              output: { deleted?: number; batches?: number; stoppedBy?: string } | null;
            }>(`SELECT name, state::text, retry_count, output FROM pgboss.job WHERE name = ANY($1::text[]) ORDER BY created_on`, [
              [QUEUES.purgeExpired, QUEUES.reapIdle, QUEUES.deadLetter],
            ])
          ).rows;
        const first = await until(
          'the first purge and reap to end',
          async () => {
            const all = await jobs();
            const bad = all.find((j) => j.name === QUEUES.deadLetter || j.state === 'failed' || j.state === 'retry' || j.retry_count > 0);
            if (bad) assert.fail(`a run did not complete while rows were held: ${JSON.stringify(bad)}`);
            const purge = all.find((j) => j.name === QUEUES.purgeExpired && j.state === 'completed');
            const reap = all.find((j) => j.name === QUEUES.reapIdle && j.state === 'completed');
            return purge && reap && { purge, reap };
          },
          200_000,
        ).catch(async (error: unknown) =>
          assert.fail(
            `${String(error)}; jobs: ${JSON.stringify(await jobs())}; replicas' logs (last 40 lines each):\n${replicas.map((r, i) => `--- replica ${i}:\n${r.output().trimEnd().split('\n').slice(-40).join('\n')}`).join('\n')}`,
          ),
        );
        assert.equal(first.purge.output?.stoppedBy, 'drained');
        assert.equal(first.reap.output?.stoppedBy, 'drained');
        // Every held row and every live row is still there; the rest went, but for the ids a batch
        // left for a later run after its bounded tries past the held ones (tasks/held-rows.ts).
        const { rows: afterFirst } = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session ORDER BY id');
        const present = new Set(afterFirst.map((r) => r.id));
        assert.deepEqual(
          [...live, ...held].filter((id) => !present.has(id)),
          [],
          'a live or held row was deleted',
        );
        t.diagnostic(
          `held ${held.length} rows (${holders.length} holding transactions); first purge: ${first.purge.output?.deleted} rows in ${first.purge.output?.batches} batches; first reap: ${first.reap.output?.deleted} rows; left for a later run besides the held ones: ${afterFirst.length - live.length - held.length}`,
        );
        // No tick after these. A run that the SIGTERM below cut short would leave the reaper's pass
        // unfinished, and the next run carries a pass on from where it stands, past the rows it
        // skipped (the pass after takes them): so every run ends before the replicas are stopped.
        const boss = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
        await boss.start();
        try {
          for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle]) await boss.unschedule(queue);
        } finally {
          await boss.stop({ graceful: false });
        }
        const { rows: clock } = await db.pool.query<{ now: Date }>('SELECT now()');
        await until(
          'the scheduled queues to be idle, after a few passes without the schedules',
          async () => {
            const { rows } = await db.pool.query<{ passed: boolean; busy: number }>(
              `SELECT (SELECT cron_on > $2::timestamptz + interval '3 seconds' FROM pgboss.version) AS passed,
                      (SELECT count(*)::int FROM pgboss.job WHERE name = ANY($1::text[]) AND state IN ('created', 'active', 'retry')) AS busy`,
              [[QUEUES.purgeExpired, QUEUES.reapIdle, '__pgboss__send-it'], clock[0]?.now],
            );
            return rows[0]?.passed === true && rows[0].busy === 0;
          },
          120_000,
        );
      } finally {
        await releaseAll(holders);
        for (const r of replicas) r.child.kill('SIGTERM');
        await Promise.all(replicas.map((r) => r.finished));
      }
      // The holders are gone: a manual run of each takes the rows they held.
      for (const command of ['purge-expired', 'reap-idle']) {
        const result = await runCli([command], { DATABASE_URL: db.url, JANITOR_IDLE_TIMEOUT: '1h' }).finished;
        assert.equal(result.code, 0, result.stdout + result.stderr);
      }
      const { rows: left } = await db.pool.query<{ id: number }>('SELECT id FROM auth.refresh_session ORDER BY id');
      assert.deepEqual(
        left.map((r) => r.id),
        live,
      );
    },
  );
});

/** The ids of the snapshot's rows that the requests select (the model of the selectors). */
function revokedBy(requests: readonly RevokeRequest[], snapshot: readonly SnapshotRow[], oldInstant: string): Set<number> {
  const byUser = new Map<number, SnapshotRow[]>();
  const byJti = new Map<string, SnapshotRow>();
  for (const row of snapshot) {
    const rows = byUser.get(row.user_id);
    if (rows) rows.push(row);
    else byUser.set(row.user_id, [row]);
    byJti.set(row.jti, row);
  }
  const ids = new Set<number>();
  for (const request of requests) {
    if (request.jtis !== undefined) {
      for (const jti of request.jtis) {
        const row = byJti.get(jti);
        if (row) ids.add(row.id);
      }
      continue;
    }
    for (const user of request.userIds ?? [request.userId]) {
      for (const row of byUser.get(user ?? 0) ?? []) {
        if (request.exceptJti !== undefined && request.exceptJti === row.jti) continue;
        if (request.issuedBefore !== undefined) {
          assert.equal(request.issuedBefore, oldInstant);
          if (!row.old) continue;
        }
        ids.add(row.id);
      }
    }
  }
  return ids;
}
