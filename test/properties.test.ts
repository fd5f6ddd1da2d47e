/**
 * Correctness under any sequence: random session tables and random sequences of purge, reap and
 * revoke jobs (every selector), run by the worker's own task code on the real database, against a
 * plain model of the rules. After every step the rows the jobs reported equal what the model says
 * they delete, and after the sequence the table holds, row for row, what the model keeps.
 *
 * Time: every row is placed relative to T0, the database clock read once in the transaction that
 * inserts the rows, and relative to the cutoff it is tested against (expires_at against
 * now() - grace, last_used_at against now() - idle timeout), on a microsecond grid:
 *   - at the cutoff as of T0 (offset 0) or one microsecond before it (-1): deleted, since every
 *     later statement's now() is after T0;
 *   - MARGIN after it, the smallest margin that stays safe: kept, as long as the whole sequence
 *     ends before T0 + MARGIN (checked on the database clock at the end of every run);
 *   - anywhere further out on either side.
 * created_at is compared with issuedBefore instants given to the microsecond, equal to a row's
 * created_at (kept: strictly before), one microsecond either side of it, or anywhere.
 *
 * A step is one to three jobs run at once: their deletions together must equal the model's union,
 * which no row can be counted in twice.
 *
 * SJ_PROPERTY_RUNS (default 40, a few seconds) sets the number of runs, SJ_PROPERTY_SEED replays one.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { validateRevokeRequest, type RevokeRequest } from '../src/revoke-request.ts';
import { purgeExpired } from '../src/tasks/purge-expired.ts';
import { reapIdle } from '../src/tasks/reap-idle.ts';
import { revoke } from '../src/tasks/revoke.ts';
import { remainingIds, taskContext, testConfig, useTestDatabase } from './helpers/database.ts';

const RUNS = Number(process.env.SJ_PROPERTY_RUNS ?? 40);
/** Jobs run at once in one step of a scenario. */
const MAX_JOBS_PER_STEP = 3;
const SEED = process.env.SJ_PROPERTY_SEED === undefined ? undefined : Number(process.env.SJ_PROPERTY_SEED);

const US = 1_000_000n;
/** The kept side's margin: longer than a whole run of a sequence takes (asserted). */
const MARGIN_SECONDS = 60;
const MARGIN = BigInt(MARGIN_SECONDS) * US;
const DAY_SECONDS = 86_400;
/** Valid user ids nobody has: revoking them deletes nothing. */
const UNKNOWN_USERS = [2_147_483_647, 1_000_000_000];

const GRACES = [
  ['0s', 0],
  ['90s', 90],
  ['1h', 3600],
] as const;
const IDLE_TIMEOUTS = [
  ['1h', 3600],
  ['2h', 7200],
  ['30d', 30 * DAY_SECONDS],
] as const;

// ---------------------------------------------------------------------------------------------
// Scenarios: plain data, with rows and users referred to by index (resolved after the insert).

/** Microseconds relative to a cutoff as of T0: <= 0 deleted, >= MARGIN kept. */
const relative = fc.oneof(
  fc.constant(0n),
  fc.constant(-1n),
  fc.constant(MARGIN),
  fc.tuple(fc.integer({ min: 0, max: 60 * DAY_SECONDS }), fc.integer({ min: 0, max: 999_999 })).map(([s, us]) => -(BigInt(s) * US + BigInt(us)) - 1n),
  fc.tuple(fc.integer({ min: 0, max: 60 * DAY_SECONDS }), fc.integer({ min: 0, max: 999_999 })).map(([s, us]) => MARGIN + BigInt(s) * US + BigInt(us)),
);

/** created_at = T0 - this many microseconds; a few shared values make ties. */
const createdAgo = fc.oneof(
  fc.constantFrom(0n, 1n, 3600n * US, 86_400n * US),
  fc.tuple(fc.integer({ min: 0, max: 90 * DAY_SECONDS }), fc.integer({ min: 0, max: 999_999 })).map(([s, us]) => BigInt(s) * US + BigInt(us)),
);

const rowSpec = fc.record({ expires: relative, idle: relative, createdAgo, user: fc.nat() });
type RowSpec = typeof rowSpec extends fc.Arbitrary<infer T> ? T : never;

const instantSpec = fc.oneof(
  fc.record({ kind: fc.constant('row' as const), row: fc.nat(), deltaUs: fc.constantFrom(-1n, 0n, 1n) }),
  fc.record({ kind: fc.constant('ago' as const), ago: createdAgo }),
);
type InstantSpec = typeof instantSpec extends fc.Arbitrary<infer T> ? T : never;

const jtiSpec = fc.oneof(
  fc.record({ kind: fc.constant('row' as const), row: fc.nat(), upper: fc.boolean() }),
  fc.record({ kind: fc.constant('random' as const), uuid: fc.uuid() }),
);
type JtiSpec = typeof jtiSpec extends fc.Arbitrary<infer T> ? T : never;

const userSpec = fc.oneof(
  { weight: 5, arbitrary: fc.nat().map((user) => ({ kind: 'known' as const, user })) },
  { weight: 1, arbitrary: fc.constantFrom(...UNKNOWN_USERS).map((id) => ({ kind: 'unknown' as const, id })) },
);
type UserSpec = typeof userSpec extends fc.Arbitrary<infer T> ? T : never;

const jobSpec = fc.oneof(
  fc.constant({ kind: 'purge' as const }),
  fc.constant({ kind: 'reap' as const }),
  fc.record({ kind: fc.constant('userId' as const), user: userSpec }),
  // The session kept is most often one of the user's own (the "other devices" case).
  fc.record({
    kind: fc.constant('userId+exceptJti' as const),
    user: userSpec,
    except: fc.oneof(
      fc.nat().map((n) => ({ kind: 'own' as const, n })),
      jtiSpec,
    ),
  }),
  fc.record({ kind: fc.constant('userIds' as const), users: fc.array(userSpec, { minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant('jtis' as const), jtis: fc.array(jtiSpec, { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('issuedBefore' as const), before: instantSpec }),
  fc.record({ kind: fc.constant('userId+issuedBefore' as const), user: userSpec, before: instantSpec }),
);
type JobSpec = typeof jobSpec extends fc.Arbitrary<infer T> ? T : never;

const scenario = fc.record({
  users: fc.integer({ min: 1, max: 6 }),
  rows: fc.array(rowSpec, { maxLength: 60 }),
  /** Each step: one to three jobs run at once. */
  steps: fc.array(fc.array(jobSpec, { minLength: 1, maxLength: MAX_JOBS_PER_STEP }), { minLength: 1, maxLength: 6 }),
  grace: fc.constantFrom(...GRACES),
  idle: fc.constantFrom(...IDLE_TIMEOUTS),
  batch: fc.constantFrom(10, 13, 25),
  lanes: fc.integer({ min: 1, max: 3 }),
  idleIndex: fc.boolean(),
});
type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

// ---------------------------------------------------------------------------------------------
// The model.

interface ModelRow {
  readonly id: number;
  readonly jti: string;
  readonly userId: number;
  /** expires_at <= now() - grace as of T0: the purge deletes it. */
  readonly expired: boolean;
  /** last_used_at <= now() - idle timeout as of T0: the reaper deletes it. */
  readonly idle: boolean;
  /** created_at in microseconds since the epoch. */
  readonly createdUs: bigint;
}

type Job = { readonly kind: 'purge' } | { readonly kind: 'reap' } | { readonly kind: 'revoke'; readonly request: RevokeRequest; readonly beforeUs?: bigint };

function matches(job: Job, row: ModelRow): boolean {
  if (job.kind === 'purge') return row.expired;
  if (job.kind === 'reap') return row.idle;
  const r = job.request;
  if (r.userIds !== undefined) return r.userIds.includes(row.userId);
  if (r.jtis !== undefined) return r.jtis.some((jti) => jti.toLowerCase() === row.jti);
  if (r.userId !== undefined) {
    if (r.userId !== row.userId) return false;
    if (r.exceptJti !== undefined && r.exceptJti.toLowerCase() === row.jti) return false;
    return job.beforeUs === undefined || row.createdUs < job.beforeUs;
  }
  return job.beforeUs !== undefined && row.createdUs < job.beforeUs;
}

/** An instant given to the microsecond: 2026-11-28T12:00:00.123456Z. */
function isoMicros(us: bigint): string {
  const ms = us / 1000n;
  return new Date(Number(ms)).toISOString().replace('Z', `${String(us - ms * 1000n).padStart(3, '0')}Z`);
}

function resolve(spec: JobSpec, rows: readonly ModelRow[], userIds: readonly number[], t0: bigint): Job {
  const user = (u: UserSpec) => (u.kind === 'unknown' ? u.id : (userIds[u.user % userIds.length] ?? UNKNOWN_USERS[0] ?? 1));
  const jti = (j: JtiSpec | { kind: 'own'; n: number }, userId?: number) => {
    if (j.kind === 'own') {
      const own = rows.filter((r) => r.userId === userId);
      return own[j.n % Math.max(1, own.length)]?.jti ?? '00000000-0000-4000-8000-000000000000';
    }
    const row = rows.length === 0 ? undefined : rows[(j.kind === 'row' ? j.row : 0) % rows.length];
    if (j.kind === 'random' || row === undefined) return j.kind === 'random' ? j.uuid : '00000000-0000-4000-8000-000000000000';
    return j.upper ? row.jti.toUpperCase() : row.jti;
  };
  const instant = (i: InstantSpec): bigint => {
    if (i.kind === 'ago' || rows.length === 0) return t0 - (i.kind === 'ago' ? i.ago : 0n);
    const row = rows[i.row % rows.length];
    return (row?.createdUs ?? t0) + i.deltaUs;
  };
  const reason = 'property-test';
  switch (spec.kind) {
    case 'purge':
    case 'reap':
      return spec;
    case 'userId':
      return { kind: 'revoke', request: { userId: user(spec.user), reason } };
    case 'userId+exceptJti': {
      const userId = user(spec.user);
      return { kind: 'revoke', request: { userId, exceptJti: jti(spec.except, userId), reason } };
    }
    case 'userIds':
      return { kind: 'revoke', request: { userIds: spec.users.map(user), reason } };
    case 'jtis':
      return { kind: 'revoke', request: { jtis: spec.jtis.map(jti), reason } };
    case 'issuedBefore': {
      const beforeUs = instant(spec.before);
      return { kind: 'revoke', request: { issuedBefore: isoMicros(beforeUs), reason }, beforeUs };
    }
    case 'userId+issuedBefore': {
      const beforeUs = instant(spec.before);
      return { kind: 'revoke', request: { userId: user(spec.user), issuedBefore: isoMicros(beforeUs), reason }, beforeUs };
    }
  }
}

const ids = (rows: readonly ModelRow[]) => rows.map((r) => r.id).sort((a, b) => a - b);

// ---------------------------------------------------------------------------------------------

describe('properties: purge, reap and revoke under any sequence', () => {
  const db = useTestDatabase();

  /** Inserts the scenario's users and rows in one transaction; returns T0 and the model rows. */
  async function arrange(s: Scenario): Promise<{ t0: bigint; rows: ModelRow[]; userIds: number[] }> {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      const { rows: clock } = await client.query<{ t0: string }>(`SELECT (extract(epoch FROM now()) * 1000000)::bigint::text AS t0`);
      const t0 = BigInt(clock[0]?.t0 ?? '0');
      const users = await client.query<{ id: number }>(
        `INSERT INTO auth."user" (email) SELECT 'p-' || gen_random_uuid() || '@example.invalid' FROM generate_series(1, $1::int) RETURNING id`,
        [s.users],
      );
      const userIds = users.rows.map((r) => r.id).sort((a, b) => a - b);
      const graceUs = BigInt(s.grace[1]) * US;
      const idleUs = BigInt(s.idle[1]) * US;
      const offsets = (f: (r: RowSpec) => bigint) => s.rows.map((r) => f(r).toString());
      // Offsets from now() (= T0 in this transaction) in whole microseconds: exact.
      const { rows } = await client.query<{ id: number; jti: string; user_id: number; n: string }>(
        `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at, created_at)
         SELECT u, now() + interval '1 microsecond' * e, now() + interval '1 microsecond' * l, now() + interval '1 microsecond' * c
           FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS t(u, e, l, c, n)
          ORDER BY n
         RETURNING id, jti::text, user_id`,
        [
          s.rows.map((r) => userIds[r.user % userIds.length]),
          offsets((r) => r.expires - graceUs),
          offsets((r) => r.idle - idleUs),
          offsets((r) => -r.createdAgo),
        ],
      );
      await client.query('COMMIT');
      const model = rows.map((row, i): ModelRow => {
        const spec = s.rows[i];
        assert.ok(spec);
        return { id: row.id, jti: row.jti, userId: row.user_id, expired: spec.expires <= 0n, idle: spec.idle <= 0n, createdUs: t0 - spec.createdAgo };
      });
      return { t0, rows: model, userIds };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  /**
   * poolMax: the jobs of a step run at once, each as a worker's run would: a purge's lanes and its
   * latency guard's connection, which a run holds together (tasks/latency-probe.ts). Each worker's
   * pool has room for its own runs (worker.ts); one pool shared by up to three runs needs room for
   * each run's guard connection and one lane, or all of them hold a guard connection and wait.
   */
  async function check(s: Scenario, poolMax = MAX_JOBS_PER_STEP * (s.lanes + 1) + 1): Promise<void> {
    await db.pool.query('TRUNCATE auth.refresh_session, auth."user", session_janitor.reap_position CASCADE');
    if (s.idleIndex) await db.pool.query('CREATE INDEX refresh_session_last_used_at_idx ON auth.refresh_session (last_used_at)');
    const width = String(s.batch);
    const config = testConfig(db.url, {
      JANITOR_EXPIRED_GRACE: s.grace[0],
      JANITOR_IDLE_TIMEOUT: s.idle[0],
      JANITOR_BATCH_SIZE: width,
      JANITOR_BATCH_MIN_SIZE: '10',
      JANITOR_BATCH_MAX_SIZE: width,
      JANITOR_PURGE_CONCURRENCY: String(s.lanes),
      // Jobs of one step wait for each other's rows for milliseconds; a lock timeout that short
      // would make the purge or the reaper skip a row by design (a later run takes it), which
      // this model of runs to completion does not predict. (test/replicas.test.ts runs the default.)
      JANITOR_LOCK_TIMEOUT: '2s',
    });
    const ctx = taskContext(config, poolMax);
    try {
      const { t0, rows, userIds } = await arrange(s);
      let alive = rows;
      const totals = { expired: 0, idle: 0, revoked: 0 };
      for (const [stepIndex, step] of s.steps.entries()) {
        const jobs = step.map((spec) => resolve(spec, rows, userIds, t0));
        const outputs = await Promise.all(
          jobs.map(async (job): Promise<number> => {
            if (job.kind === 'purge') {
              const output = await purgeExpired(ctx);
              assert.equal(output.stoppedBy, 'drained');
              totals.expired += output.deleted;
              return output.deleted;
            }
            if (job.kind === 'reap') {
              const output = await reapIdle(ctx);
              assert.equal(output.stoppedBy, 'drained');
              totals.idle += output.deleted;
              return output.deleted;
            }
            const validation = validateRevokeRequest(job.request);
            assert.ok(validation.ok, `the scenario built an invalid request: ${JSON.stringify(job.request)}`);
            const output = await revoke(ctx, validation.request);
            totals.revoked += output.revoked;
            return output.revoked;
          }),
        );
        const gone = alive.filter((row) => jobs.some((job) => matches(job, row)));
        alive = alive.filter((row) => !gone.includes(row));
        const reported = outputs.reduce((a, b) => a + b, 0);
        assert.equal(
          reported,
          gone.length,
          `step ${stepIndex} (${jobs.map((j) => (j.kind === 'revoke' ? JSON.stringify(j.request) : j.kind)).join(' | ')}): the jobs reported ${reported} rows, the model deletes ${gone.length}`,
        );
        if (step.length === 1) {
          assert.deepEqual(await remainingIds(db.pool), ids(alive), `step ${stepIndex}: the rows left`);
        }
      }
      assert.deepEqual(await remainingIds(db.pool), ids(alive), 'the rows left after the sequence');
      const counted = Object.fromEntries((await ctx.metrics.sessionsDeleted.get()).values.map((v) => [v.labels.reason, v.value]));
      for (const reason of ['expired', 'idle', 'revoked'] as const) assert.equal(counted[reason] ?? 0, totals[reason], `the ${reason} counter`);
      // The model's assumption: every statement of the run saw now() before T0 + MARGIN.
      const { rows: clock } = await db.pool.query<{ elapsed: string }>(
        `SELECT ((extract(epoch FROM clock_timestamp()) * 1000000)::bigint - $1::bigint)::text AS elapsed`,
        [t0.toString()],
      );
      assert.ok(BigInt(clock[0]?.elapsed ?? '0') < MARGIN, `the run took longer than the ${MARGIN_SECONDS} s margin the model relies on`);
    } finally {
      await ctx.pool.end();
      if (s.idleIndex) await db.pool.query('DROP INDEX IF EXISTS auth.refresh_session_last_used_at_idx');
    }
  }

  test(`the table left equals the model's, row for row (${RUNS} runs)`, { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(scenario, (s) => check(s)),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
  });

  test('the edges of every rule, as one fixed scenario', async () => {
    // Every cutoff position on both clocks, ties in created_at, and every selector once.
    const positions = [0n, -1n, MARGIN, -3600n * US, MARGIN + 1n];
    const rows: RowSpec[] = [];
    for (const [i, expires] of positions.entries())
      for (const [j, idle] of positions.entries()) rows.push({ expires, idle, createdAgo: BigInt((i + j) % 3) * 3600n * US, user: i + j });
    const row = (n: number) => ({ kind: 'row' as const, row: n, upper: n % 2 === 0 });
    const known = (n: number) => ({ kind: 'known' as const, user: n });
    await check({
      users: 5,
      rows,
      steps: [
        [{ kind: 'userId+exceptJti', user: known(1), except: row(1) }],
        [{ kind: 'userId+issuedBefore', user: known(2), before: { kind: 'row', row: 2, deltaUs: 0n } }],
        [{ kind: 'purge' }, { kind: 'jtis', jtis: [row(3), row(4), row(0)] }],
        [{ kind: 'reap' }, { kind: 'userIds', users: [known(3), { kind: 'unknown', id: 1_000_000_000 }] }],
        [{ kind: 'issuedBefore', before: { kind: 'row', row: 5, deltaUs: 1n } }],
        [{ kind: 'userId', user: known(4) }, { kind: 'purge' }, { kind: 'reap' }],
      ],
      grace: GRACES[2],
      idle: IDLE_TIMEOUTS[0],
      batch: 10,
      lanes: 3,
      idleIndex: false,
    });
  });

  test('two purges of three lanes at once (the property found a deadlock on the latency guard)', async () => {
    // Before the fix the guard took a pool connection for each probe while its lanes held theirs:
    // with the other purge's lanes holding the rest, the probe and a lane waited for each other until
    // the pool's connect timeout failed the run ("timeout exceeded when trying to connect"; shrunk
    // from seed -1123606692 on PostgreSQL 17).
    await check(
      {
        users: 1,
        rows: [{ expires: -1n, idle: 60_000_000n, createdAgo: 0n, user: 0 }],
        steps: [[{ kind: 'purge' }, { kind: 'purge' }], [{ kind: 'purge' }]],
        grace: GRACES[0],
        idle: IDLE_TIMEOUTS[0],
        batch: 10,
        lanes: 3,
        idleIndex: false,
      },
      // The pool of five all jobs had then (lanes + 2).
      5,
    );
  });
});
