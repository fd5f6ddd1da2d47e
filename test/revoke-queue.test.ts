/**
 * The revoke queue end to end: a real worker (startWorker) consuming `refresh-session.revoke` on a
 * test database, jobs enqueued by session_janitor.enqueue_revocation, by the Node client (through a
 * PgBoss and through a connection string) and by a producer role with only the documented grants.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { createBoss, ensureQueues } from '../src/boss.ts';
import { createAuthTables } from '../src/db/dev-bootstrap.ts';
import { MAX_PAYLOAD_BYTES } from '../src/db/sql/enqueue-revocation.ts';
import { migrateOwnSchema, readVersion } from '../src/db/migrate.ts';
import { LATEST_VERSION } from '../src/db/sql/migrations.ts';
import { install } from '../src/install.ts';
import { InvalidRevokeRequestError, RevocationFailedError, enqueueRevocation, waitForRevocation } from '../src/client.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { MAX_IDS, type RevokeRequest } from '../src/revoke-request.ts';
import {
  closePool,
  createTestDatabase,
  databaseUrl,
  insertSessions,
  remainingIds,
  silentLogger,
  testConfig,
  type InsertedSession,
  type TestDatabase,
} from './helpers/database.ts';

interface JobRow {
  state: string;
  retry_count: number;
  output: { error?: string; issues?: Array<{ path: string; message: string }>; revoked?: number; message?: string } | null;
  start_after_in: number;
}

describe('the revoke queue', () => {
  let db: TestDatabase;
  let worker: Worker;
  let producer: PgBoss;
  const roles: string[] = [];

  before(async () => {
    db = await createTestDatabase();
    const config = testConfig(db.url, { JANITOR_REVOKE_CONCURRENCY: '4' });
    worker = await startWorker(config, silentLogger());
    // Another service's pg-boss on the same database: sends only.
    producer = createBoss(config, db.url, { role: 'tool', migrate: false }, silentLogger());
    await producer.start();
  });

  after(async () => {
    await producer?.stop({ graceful: false });
    await worker?.stop();
    await db?.drop();
    if (roles.length > 0) {
      const admin = new pg.Client({ connectionString: process.env.SJ_TEST_ADMIN_URL });
      await admin.connect();
      for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
      await admin.end();
    }
  });

  const enqueueSql = async (payload: string, dedupeKey: string | null = null): Promise<string | null> => {
    const { rows } = await db.pool.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb, $2) AS id', [payload, dedupeKey]);
    return rows[0]?.id ?? null;
  };

  const readJob = async (id: string, queue: string = QUEUES.revoke): Promise<JobRow | undefined> => {
    const { rows } = await db.pool.query<JobRow>(
      `SELECT state::text, retry_count, output, extract(epoch FROM start_after - now())::float8 AS start_after_in FROM pgboss.job WHERE name = $1 AND id = $2`,
      [queue, id],
    );
    return rows[0];
  };

  /** Waits until the job is in one of states (it may pass through others). */
  async function settled(id: string, states: readonly string[], timeoutMs = 10_000): Promise<JobRow> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const job = await readJob(id);
      if (job && states.includes(job.state)) return job;
      if (performance.now() > deadline) assert.fail(`job ${id} is ${job?.state ?? 'missing'}, not ${states.join('/')}, after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  const deadLetterOf = async (id: string) => {
    const { rows } = await db.pool.query<{ data: unknown; output: unknown; source_output: JobRow['output']; source_name: string; state: string }>(
      `SELECT data, output, source_output, source_name, state::text FROM pgboss.job WHERE name = $1 AND source_id = $2`,
      [QUEUES.deadLetter, id],
    );
    return rows;
  };

  /** A login role with only the producer's grants (docs/producers.md), connected. */
  const loginRole = async (): Promise<pg.Client> => {
    const role = `sj_producer_${randomBytes(5).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    roles.push(role);
    await db.pool.query(`GRANT USAGE ON SCHEMA session_janitor TO ${role}`);
    await db.pool.query(
      `GRANT EXECUTE ON FUNCTION session_janitor.enqueue_revocation(jsonb, text), session_janitor.revocation_status(uuid), session_janitor.revocation_by_key(text) TO ${role}`,
    );
    const url = new URL(db.url);
    url.username = role;
    url.password = password;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    return client;
  };

  const jobCount = async (queue: string, outcome: string) =>
    (await worker.metrics.jobs.get()).values.find((v) => v.labels.queue === queue && v.labels.outcome === outcome)?.value ?? 0;

  const usersOf = (sessions: readonly InsertedSession[]) => [...new Set(sessions.map((s) => s.userId))];

  test('invalid payloads of every kind fail at once, without retry, into the dead-letter queue, deleting nothing', async () => {
    const sessions = await insertSessions(
      db.pool,
      Array.from({ length: 6 }, (_, i) => ({ expiresIn: 86_400, user: i % 3 })),
    );
    const [u1, u2] = usersOf(sessions);
    const before = await remainingIds(db.pool);
    const cases: Array<{ name: string; payload: string; path: string; names: string[] }> = [
      { name: 'missing reason', payload: JSON.stringify({ userId: u1 }), path: 'reason', names: ['reason'] },
      { name: 'two selectors', payload: JSON.stringify({ userId: u1, userIds: [u2], reason: 'r' }), path: '', names: ['userId', 'userIds'] },
      { name: 'a string user id', payload: JSON.stringify({ userId: String(u1), reason: 'r' }), path: 'userId', names: ['userId'] },
      { name: 'a negative id', payload: JSON.stringify({ userIds: [u1, -5], reason: 'r' }), path: 'userIds[1]', names: ['userIds[1]'] },
      {
        name: '100001 ids',
        payload: JSON.stringify({ userIds: Array.from({ length: 100_001 }, (_, i) => (i === 0 ? u1 : i + 1_000_000)), reason: 'r' }),
        path: 'userIds',
        names: ['userIds', '100000'],
      },
      { name: 'a bad uuid', payload: JSON.stringify({ jtis: ['not-a-uuid', sessions[0]?.jti], reason: 'r' }), path: 'jtis[0]', names: ['jtis[0]'] },
      { name: 'an unknown field', payload: JSON.stringify({ userId: u1, reason: 'r', force: true }), path: 'force', names: ['force'] },
      { name: 'a JSON array', payload: JSON.stringify([{ userId: u1, reason: 'r' }]), path: '', names: ['JSON object'] },
      { name: 'a JSON string', payload: JSON.stringify('revoke user 1'), path: '', names: ['JSON object'] },
      {
        name: 'an issuedBefore without offset',
        payload: JSON.stringify({ userId: u1, issuedBefore: '2000-01-01T00:00:00', reason: 'r' }),
        path: 'issuedBefore',
        names: ['issuedBefore'],
      },
    ];
    // More than 100000 ids is refused by the SQL function at enqueue (the test of oversized payloads
    // below): sent past it, the worker dead-letters it.
    const ids = await Promise.all(cases.map((c) => (c.name === '100001 ids' ? producer.send(QUEUES.revoke, JSON.parse(c.payload)) : enqueueSql(c.payload))));
    for (const [i, c] of cases.entries()) {
      const id = ids[i];
      assert.ok(id, `${c.name}: not enqueued`);
      const job = await settled(id, ['failed', 'completed']);
      assert.equal(job.state, 'failed', `${c.name}: ${job.state}`);
      assert.equal(job.retry_count, 0, `${c.name}: retried`);
      assert.equal(job.output?.error, 'invalid_payload', `${c.name}: ${JSON.stringify(job.output)}`);
      const dead = await deadLetterOf(id);
      assert.equal(dead.length, 1, `${c.name}: no dead-letter copy`);
      const copy = dead[0];
      assert.ok(copy);
      assert.equal(copy.source_name, QUEUES.revoke);
      assert.deepEqual(copy.data, JSON.parse(c.payload), `${c.name}: the dead letter does not carry the payload`);
      // docs/CONTRACT.md: the copy carries the failed job's output in source_output; its own is empty.
      assert.equal(copy.source_output?.error, 'invalid_payload');
      assert.equal(copy.output, null);
      const issue = copy.source_output?.issues?.find((x) => x.path === c.path);
      assert.ok(issue, `${c.name}: no issue at ${JSON.stringify(c.path)}: ${JSON.stringify(copy.source_output?.issues)?.slice(0, 300)}`);
      for (const name of c.names) assert.ok(issue.message.includes(name), `${c.name}: ${JSON.stringify(issue.message)} does not name ${name}`);
    }
    assert.deepEqual(await remainingIds(db.pool), before, 'an invalid request deleted sessions');
    assert.ok((await jobCount(QUEUES.revoke, 'rejected')) >= cases.length);
  });

  test('ids that JSON.parse would round to an integer, and offsets PostgreSQL refuses, fail at once as invalid_payload, deleting nothing', async () => {
    // Two users with consecutive ids: "<below>.99999999999999999" parses to `above` in JavaScript.
    const sessions = await insertSessions(
      db.pool,
      Array.from({ length: 4 }, (_, i) => ({ expiresIn: 86_400, user: i % 2 })),
    );
    const [below, above] = usersOf(sessions).sort((a, b) => a - b);
    assert.ok(below !== undefined && above === below + 1, `users ${below} and ${above} are not consecutive`);
    const before = await remainingIds(db.pool);
    const cases: Array<{ name: string; payload: string; path: string }> = [
      { name: 'a userId just below an integer', payload: `{"userId": ${below}.99999999999999999, "reason": "r"}`, path: 'userId' },
      { name: 'a userIds element just below an integer', payload: `{"userIds": [${below}.99999999999999999], "reason": "r"}`, path: 'userIds[0]' },
      { name: 'a userId just above an integer', payload: `{"userId": ${above}.00000000000000001, "reason": "r"}`, path: 'userId' },
      {
        name: 'an offset beyond +15:59',
        payload: JSON.stringify({ userId: below, issuedBefore: '2026-01-01T00:00:00+16:00', reason: 'r' }),
        path: 'issuedBefore',
      },
      {
        name: 'an offset beyond -15:59',
        payload: JSON.stringify({ userId: below, issuedBefore: '2026-01-01T00:00:00-23:59', reason: 'r' }),
        path: 'issuedBefore',
      },
    ];
    for (const c of cases) {
      const id = await enqueueSql(c.payload);
      assert.ok(id, `${c.name}: not enqueued`);
      const job = await settled(id, ['failed', 'completed']);
      assert.deepEqual(
        { state: job.state, retries: job.retry_count, error: job.output?.error },
        { state: 'failed', retries: 0, error: 'invalid_payload' },
        `${c.name}: ${JSON.stringify(job.output)}`,
      );
      assert.ok(
        job.output?.issues?.some((i) => i.path === c.path),
        `${c.name}: ${JSON.stringify(job.output?.issues)}`,
      );
      assert.equal((await deadLetterOf(id)).length, 1, `${c.name}: no dead-letter copy`);
    }
    assert.deepEqual(await remainingIds(db.pool), before, 'sessions were revoked');
  });

  test("the SQL function enqueues a valid job with the queue's settings; the worker carries it out at once (NOTIFY)", async () => {
    const sessions = await insertSessions(
      db.pool,
      Array.from({ length: 4 }, (_, i) => ({ expiresIn: 86_400, user: i % 2 })),
    );
    const [u1, u2] = usersOf(sessions);
    const started = performance.now();
    const id = await enqueueSql(JSON.stringify({ userId: u1, reason: 'password-changed', requestedBy: 'test' }));
    assert.ok(id);
    assert.deepEqual(await waitForRevocation(db.url, id, { timeoutMs: 10_000, intervalMs: 50 }), { revoked: 2 });
    // With notify on, the worker's poll is a 30 s backstop: a pick-up within seconds is the NOTIFY.
    assert.ok(performance.now() - started < 5_000, `took ${Math.round(performance.now() - started)} ms`);
    assert.deepEqual(
      (await db.pool.query<{ user_id: number }>('SELECT user_id FROM auth.refresh_session WHERE id = ANY($1)', [sessions.map((s) => s.id)])).rows.map(
        (r) => r.user_id,
      ),
      [u2, u2],
    );
  });

  test("the SQL function's job matches boss.send's: retry, expiry, retention, dead letter, dedupe slot", async () => {
    const [viaSql, viaClient] = await assertSqlJobMatchesSend(db.pool, producer);
    await settled(viaSql, ['completed']);
    await settled(viaClient, ['completed']);
  });

  // A database of an earlier release keeps the functions of its migrations until an upgrade
  // replaces them: the drift test also runs on one migrated to each earlier version, then upgraded.
  for (let version = 3; version < LATEST_VERSION; version++) {
    test(`the SQL function's job matches boss.send's on a database migrated to version ${version}, then upgraded`, async () => {
      const upgraded = await createUpgradedDatabase(version);
      const boss = createBoss(testConfig(upgraded.url), upgraded.url, { role: 'tool', migrate: false }, silentLogger());
      await boss.start();
      try {
        await assertSqlJobMatchesSend(upgraded.pool, boss);
      } finally {
        await boss.stop({ graceful: false });
        await upgraded.drop();
      }
    });
  }

  test('an issuedBefore later than now() + 5 minutes is refused at enqueue; sent past the function it is dead-lettered as invalid_payload, deleting nothing', async () => {
    const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }, { expiresIn: 86_400 }, { expiresIn: 86_400 }]);
    const [u1] = usersOf(sessions);
    const before = await remainingIds(db.pool);
    const instant = async (offset: string) =>
      (await db.pool.query<{ at: string }>(`SELECT to_char((now() + $1::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS at`, [offset])).rows[0]
        ?.at ?? '';
    const [aYear, sixMinutes, fourMinutes] = [await instant('1 year'), await instant('6 minutes'), await instant('4 minutes')];

    // Past the SQL function (a producer with its own pg-boss): the worker checks against the database clock.
    const sent = [
      await producer.send(QUEUES.revoke, { issuedBefore: '9999-12-31T23:59:59Z', reason: 'typo' }),
      await producer.send(QUEUES.revoke, { issuedBefore: aYear, reason: 'typo' }),
      await producer.send(QUEUES.revoke, { userId: u1, issuedBefore: sixMinutes, reason: 'typo' }),
    ];
    for (const id of sent) {
      assert.ok(id);
      const job = await settled(id, ['failed', 'completed', 'retry']);
      assert.equal(job.state, 'failed', JSON.stringify(job));
      assert.equal(job.retry_count, 0);
      assert.equal(job.output?.error, 'invalid_payload', JSON.stringify(job.output));
      assert.ok(
        job.output?.issues?.some((i) => i.path === 'issuedBefore' && /5 minutes/.test(i.message)),
        JSON.stringify(job.output),
      );
    }
    assert.deepEqual(await remainingIds(db.pool), before, 'a future issuedBefore deleted sessions');

    // Through the SQL functions: refused at once, nothing enqueued.
    const refused = (error: unknown) => error instanceof Error && 'code' in error && error.code === '22023' && /issuedBefore.*5 minutes/.test(error.message);
    await assert.rejects(
      db.pool.query(`SELECT session_janitor.enqueue_global_revocation('{"issuedBefore": "9999-12-31T23:59:59Z", "reason": "typo"}')`),
      refused,
    );
    await assert.rejects(
      db.pool.query('SELECT session_janitor.enqueue_global_revocation($1::jsonb)', [JSON.stringify({ issuedBefore: aYear, reason: 'typo' })]),
      refused,
    );
    await assert.rejects(enqueueSql(JSON.stringify({ userId: u1, issuedBefore: sixMinutes, reason: 'typo' })), refused);
    await assert.rejects(enqueueRevocation(db.url, { issuedBefore: aYear, reason: 'typo' }), refused);

    // Within the skew: accepted, and carried out.
    const id = await enqueueSql(JSON.stringify({ userId: u1, issuedBefore: fourMinutes, reason: 'key-rotated' }));
    assert.ok(id);
    assert.deepEqual(await waitForRevocation(db.url, id, { intervalMs: 50 }), { revoked: 1 });
  });

  test('issuedBefore without userId (every user) is refused by enqueue_revocation: it takes enqueue_global_revocation', async () => {
    const past = JSON.stringify({ issuedBefore: '2000-01-01T00:00:00Z', reason: 'key rotation 2000' });
    await assert.rejects(
      enqueueSql(past),
      (error: unknown) => error instanceof Error && 'code' in error && error.code === '42501' && /enqueue_global_revocation/.test(error.message),
    );
    const { rows } = await db.pool.query<{ id: string }>('SELECT session_janitor.enqueue_global_revocation($1::jsonb) AS id', [past]);
    assert.ok(rows[0]?.id);
    assert.deepEqual(await waitForRevocation(db.url, rows[0].id, { intervalMs: 50 }), { revoked: 0 });
    // The client picks the function by the request.
    const viaClient = await enqueueRevocation(db.url, { issuedBefore: '2000-01-01T00:00:00Z', reason: 'key rotation 2000' });
    assert.ok(viaClient);
  });

  test('oversized payloads are refused at enqueue: more than 100000 ids, more than 5000000 bytes; the largest valid request fits', async () => {
    const jtis = Array.from({ length: MAX_IDS }, () => randomUUID());
    // The largest valid request: 100000 jtis, reason and requestedBy of 200 three-byte characters.
    const largest = { jtis, reason: '€'.repeat(200), requestedBy: '€'.repeat(200) };
    const tooMany = (error: unknown) =>
      error instanceof Error && 'code' in error && error.code === '22023' && /jtis has 100001 ids, at most 100000/.test(error.message);
    const tooBig = (error: unknown) => error instanceof Error && 'code' in error && error.code === '54000' && /bytes.*at most 5000000/.test(error.message);
    await assert.rejects(enqueueSql(JSON.stringify({ ...largest, jtis: [...jtis, randomUUID()] })), tooMany);
    await assert.rejects(
      enqueueSql(JSON.stringify({ userIds: Array.from({ length: MAX_IDS + 1 }, (_, i) => i + 1), reason: 'r' })),
      (e: unknown) => e instanceof Error && /userIds has 100001 ids/.test(e.message),
    );
    await assert.rejects(enqueueSql(JSON.stringify({ userId: 1, reason: 'r', padding: 'x'.repeat(5_000_000) })), tooBig);
    await assert.rejects(enqueueSql(JSON.stringify({ userId: 1, reason: 'r', nested: [Array.from({ length: 1_000_000 }, (_, i) => i)] })), tooBig);
    const { rows: size } = await db.pool.query<{ bytes: number }>('SELECT octet_length($1::jsonb::text) AS bytes', [JSON.stringify(largest)]);
    assert.ok((size[0]?.bytes ?? Infinity) < MAX_PAYLOAD_BYTES, `the largest valid request is ${size[0]?.bytes} bytes`);
    const id = await enqueueSql(JSON.stringify(largest));
    assert.ok(id);
    assert.equal((await settled(id, ['completed', 'failed'], 30_000)).state, 'completed');
  });

  test("the SQL function notifies on pg-boss's channel, in the same transaction", async () => {
    const channel = `pgboss_${createHash('sha224').update('pgboss').digest('hex').slice(0, 24)}`;
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(`${n.channel}:${n.payload ?? ''}`));
      await listener.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT session_janitor.enqueue_revocation($1::jsonb)', [JSON.stringify({ userId: 2_000_000_001, reason: 'notify' })]);
        await sleep(200);
        assert.deepEqual(heard, [], 'notified before commit');
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      const deadline = performance.now() + 3000;
      while (heard.length === 0 && performance.now() < deadline) await sleep(20);
      assert.deepEqual(heard, [`${channel}:${QUEUES.revoke}`]);
    } finally {
      await listener.end();
    }
  });

  test('the Node client: validates, enqueues through a PgBoss or a connection string, waits for the output', async () => {
    const sessions = await insertSessions(
      db.pool,
      Array.from({ length: 6 }, (_, i) => ({ expiresIn: 86_400, user: i % 3 })),
    );
    const [u1, u2, u3] = usersOf(sessions);
    assert.ok(u1 !== undefined && u2 !== undefined && u3 !== undefined);
    const viaBoss = await enqueueRevocation(producer, { userIds: [u1, u2], reason: 'admin', requestedBy: 'test' });
    assert.ok(viaBoss);
    assert.deepEqual(await waitForRevocation(producer, viaBoss, { intervalMs: 50 }), { revoked: 4 });
    const kept = sessions.find((s) => s.userId === u3);
    assert.ok(kept);
    const viaUrl = await enqueueRevocation(db.url, { userId: u3, exceptJti: kept.jti, reason: 'sign-out-other-devices' });
    assert.ok(viaUrl);
    assert.deepEqual(await waitForRevocation(db.url, viaUrl, { intervalMs: 50 }), { revoked: 1 });
    const left = new Set(await remainingIds(db.pool));
    assert.deepEqual(
      sessions.filter((s) => left.has(s.id)).map((s) => s.id),
      [kept.id],
    );

    // Invalid: refused before anything is sent.
    const { rows: countBefore } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [QUEUES.revoke]);
    const bad = { userId: -1, reason: '' } as unknown as RevokeRequest;
    await assert.rejects(enqueueRevocation(producer, bad), (e: unknown) => e instanceof InvalidRevokeRequestError && e.issues.some((i) => i.path === 'userId'));
    await assert.rejects(enqueueRevocation(db.url, bad), InvalidRevokeRequestError);
    const { rows: countAfter } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [QUEUES.revoke]);
    assert.deepEqual(countAfter, countBefore);

    // waitForRevocation throws with the job's output when the job failed.
    const invalid = await enqueueSql(JSON.stringify({ userId: u1, reason: 'r', extra: 1 }));
    assert.ok(invalid);
    await assert.rejects(
      waitForRevocation(db.url, invalid, { intervalMs: 50 }),
      (e: unknown) => e instanceof RevocationFailedError && e.state === 'failed' && /extra/.test(e.message),
    );
  });

  test('dedupe: a repeated singletonKey / dedupe_key returns null and is enqueued once, across both paths', async () => {
    const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }, { expiresIn: 86_400 }]);
    const [u1, u2] = usersOf(sessions);
    assert.ok(u1 !== undefined && u2 !== undefined);
    const k1 = `dedupe-${randomUUID()}`;
    const k2 = `dedupe-${randomUUID()}`;
    const first = await enqueueRevocation(producer, { userId: u1, reason: 'password-changed' }, { singletonKey: k1 });
    assert.ok(first);
    assert.equal(await enqueueRevocation(producer, { userId: u1, reason: 'password-changed' }, { singletonKey: k1 }), null);
    assert.equal(await enqueueSql(JSON.stringify({ userId: u1, reason: 'password-changed' }), k1), null);
    const second = await enqueueSql(JSON.stringify({ userId: u2, reason: 'password-changed' }), k2);
    assert.ok(second);
    assert.equal(await enqueueSql(JSON.stringify({ userId: u2, reason: 'password-changed' }), k2), null);
    assert.equal(await enqueueRevocation(db.url, { userId: u2, reason: 'password-changed' }, { singletonKey: k2 }), null);
    assert.deepEqual(await waitForRevocation(producer, first, { intervalMs: 50 }), { revoked: 1 });
    assert.deepEqual(await waitForRevocation(db.url, second, { intervalMs: 50 }), { revoked: 1 });
    // Still a duplicate once the first job is done: a late duplicate must not revoke a new login.
    assert.equal(await enqueueSql(JSON.stringify({ userId: u1, reason: 'password-changed' }), k1), null);
    // Stored scoped by the role, the same way on both paths.
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND singleton_key = ANY(array(SELECT quote_ident(session_user::text) || '/' || k FROM unnest($2::text[]) k))`,
      [QUEUES.revoke, [k1, k2]],
    );
    assert.equal(rows[0]?.n, 2);
    await assert.rejects(db.pool.query("SELECT session_janitor.enqueue_revocation('{}'::jsonb, '')"), /dedupe_key/);
  });

  test("docs/producers.md: a raw boss.send with the key never collides with the client's key; with the role-scoped key it does", async () => {
    const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
    const [u1] = usersOf(sessions);
    assert.ok(u1 !== undefined);
    const key = `raw-${randomUUID()}`;
    const request = { userId: u1, reason: 'password-changed' };
    const viaClient = await enqueueRevocation(producer, request, { singletonKey: key });
    assert.ok(viaClient);
    // The raw key is stored as given: a second job, not a duplicate of the client's.
    const raw = { singletonSeconds: 2_147_483_647 };
    const rawFirst = await producer.send(QUEUES.revoke, request, { ...raw, singletonKey: key });
    assert.ok(rawFirst, 'a raw send with the bare key is not deduplicated against the client');
    // It deduplicates only against another raw send of the same key.
    assert.equal(await producer.send(QUEUES.revoke, request, { ...raw, singletonKey: key }), null);
    // The scoped key, read as the document says, shares the client's key space.
    const { rows } = await db.pool.query<{ key: string }>("SELECT pg_catalog.quote_ident(session_user::text) || '/' || $1 AS key", [key]);
    const scoped = rows[0]?.key;
    assert.ok(scoped);
    assert.equal(await producer.send(QUEUES.revoke, request, { ...raw, singletonKey: scoped }), null, "the scoped key collides with the client's");
    // Both jobs run; which of the two finds the one session is the worker's order (a loaded
    // machine ran the raw one first): the session is revoked once.
    const viaClientDone = await waitForRevocation(producer, viaClient, { intervalMs: 50 });
    const rawDone = await waitForRevocation(producer, rawFirst, { intervalMs: 50 });
    assert.equal(viaClientDone.revoked + rawDone.revoked, 1, JSON.stringify([viaClientDone, rawDone]));
    assert.equal((await db.pool.query('SELECT 1 FROM auth.refresh_session WHERE user_id = $1', [u1])).rowCount, 0);
  });

  test('dedupe keys are scoped by the calling role: two producers may use the same key; a dead-lettered invalid request frees its key; revocation_by_key finds the jobs', async () => {
    const [alice, bob] = [await loginRole(), await loginRole()];
    try {
      const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }, { expiresIn: 86_400 }]);
      const [u1, u2] = usersOf(sessions);
      const key = `ticket-${randomUUID()}`;
      const call = 'SELECT session_janitor.enqueue_revocation($1::jsonb, $2) AS id';
      const enqueueAs = async (client: pg.Client, payload: object) =>
        (await client.query<{ id: string | null }>(call, [JSON.stringify(payload), key])).rows[0]?.id ?? null;
      // Squatting: bob's no-op request with alice's key must not take it from her.
      const squat = await enqueueAs(bob, { userId: 2_000_000_123, reason: 'noop' });
      assert.ok(squat, 'bob could not use the key');
      const real = await enqueueAs(alice, { userId: u1, reason: 'password-changed' });
      assert.ok(real, "alice's revocation was not enqueued: her key was squatted");
      assert.equal(await enqueueAs(alice, { userId: u1, reason: 'password-changed' }), null, 'the same role twice: a duplicate');
      assert.deepEqual(await waitForRevocation(alice, real, { intervalMs: 50 }), { revoked: 1 });

      // An invalid request does not hold its key once it is dead-lettered.
      const invalid = await enqueueAs(bob, { userId: u2, reason: 'typo', extra: true });
      assert.equal(invalid, null, 'bob used this key already');
      const key2 = `ticket-${randomUUID()}`;
      const first = (await bob.query<{ id: string | null }>(call, [JSON.stringify({ userId: u2, reason: 'typo', extra: true }), key2])).rows[0]?.id;
      assert.ok(first);
      assert.equal((await settled(first, ['failed', 'completed'])).output?.error, 'invalid_payload');
      const corrected = (await bob.query<{ id: string | null }>(call, [JSON.stringify({ userId: u2, reason: 'password-changed' }), key2])).rows[0]?.id;
      assert.ok(corrected, 'the corrected request was refused as a duplicate of the invalid one');
      assert.deepEqual(await waitForRevocation(bob, corrected, { intervalMs: 50 }), { revoked: 1 });
      assert.equal(
        (await bob.query<{ id: string | null }>(call, [JSON.stringify({ userId: u2, reason: 'password-changed' }), key2])).rows[0]?.id,
        null,
        'a completed job keeps its key',
      );

      // The jobs of a key, newest first, the caller's own only.
      const byKey = await bob.query<{ job_id: string; state: string; output: { error?: string; revoked?: number } }>(
        'SELECT job_id, state, output FROM session_janitor.revocation_by_key($1)',
        [key2],
      );
      assert.deepEqual(
        byKey.rows.map((r) => [r.job_id, r.state, r.output.error ?? r.output.revoked]),
        [
          [corrected, 'completed', 1],
          [first, 'failed', 'invalid_payload'],
        ],
      );
      assert.deepEqual((await alice.query('SELECT * FROM session_janitor.revocation_by_key($1)', [key2])).rows, []);
    } finally {
      await alice.end();
      await bob.end();
    }
  });

  test('a transient failure is retried by pg-boss with backoff, and dead-lettered only when no retry is left', async () => {
    const sessions = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
    const [u1] = usersOf(sessions);
    assert.ok(u1 !== undefined);
    const failedBefore = await jobCount(QUEUES.revoke, 'failed');
    await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_away');
    try {
      const retried = await enqueueSql(JSON.stringify({ userId: u1, reason: 'transient' }));
      // The same failure on a job with no retry left (retryLimit 0) goes to the dead-letter queue.
      const last = await producer.send(QUEUES.revoke, { userId: u1, reason: 'transient' }, { retryLimit: 0 });
      assert.ok(retried && last);
      const job = await settled(retried, ['retry', 'failed', 'completed']);
      assert.equal(job.state, 'retry');
      assert.equal(job.retry_count, 0);
      assert.equal(job.output?.error, 'revoke_failed');
      assert.match(job.output?.message ?? '', /refresh_session/);
      assert.ok(job.start_after_in > 10, `retried after ${job.start_after_in} s, not with the queue's backoff (15 s and more)`);
      assert.deepEqual(await deadLetterOf(retried), []);
      const exhausted = await settled(last, ['failed', 'completed']);
      assert.equal(exhausted.state, 'failed');
      const [dead] = await deadLetterOf(last);
      assert.equal(dead?.source_output?.error, 'revoke_failed');
      assert.ok((await jobCount(QUEUES.revoke, 'failed')) >= failedBefore + 2);
    } finally {
      await db.pool.query('ALTER TABLE auth.refresh_session_away RENAME TO refresh_session');
    }
  });

  test('the revoke command: --users-file with --wait; an invalid request exits 64 and enqueues nothing', async () => {
    const sessions = await insertSessions(
      db.pool,
      Array.from({ length: 6 }, (_, i) => ({ expiresIn: 86_400, user: i % 3 })),
    );
    const [u1, u2, u3] = usersOf(sessions);
    const dir = await mkdtemp(path.join(tmpdir(), 'sj-revoke-'));
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.join(import.meta.dirname, '..', 'src', 'cli.ts'), 'revoke', ...args],
          { env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'silent' }, timeout: 30_000 },
          (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }),
        );
      });
    try {
      const file = path.join(dir, 'ids.txt');
      await writeFile(file, `# incident 42\n${u1}\n\n${u2}, 2000000000\n`);
      const done = await cli(['--users-file', file, '--reason', 'compromised', '--requested-by', 'test', '--wait']);
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, /enqueued revocation job [0-9a-f-]{36}\nrevoked 4 sessions\n/);
      assert.deepEqual(
        sessions.filter((s) => s.userId === u3).map((s) => s.id),
        (await remainingIds(db.pool)).filter((id) => sessions.some((s) => s.id === id)),
      );
      const { rows: before } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [QUEUES.revoke]);
      const refused = await cli(['--user', String(u3), '--jti', 'nope', '--reason', 'r']);
      assert.equal(refused.code, 64);
      assert.match(refused.stderr, /userId and jtis cannot be combined/);
      assert.match(refused.stderr, /jtis\[0\] must be a UUID/);
      const { rows: after } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [QUEUES.revoke]);
      assert.deepEqual(after, before);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a producer role with only USAGE and EXECUTE enqueues from plain SQL, and can do nothing else', async () => {
    const role = `sj_producer_${randomBytes(5).toString('hex')}`;
    const password = randomBytes(12).toString('hex');
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
    roles.push(role);
    const url = new URL(db.url);
    url.username = role;
    url.password = password;
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const sessions = await insertSessions(db.pool, [
      { expiresIn: 86_400, user: 0 },
      { expiresIn: 86_400, user: 0 },
      { expiresIn: 86_400, user: 1 },
    ]);
    const [u1] = usersOf(sessions);
    const call = `SELECT session_janitor.enqueue_revocation('${JSON.stringify({ userId: u1, reason: 'password-changed', requestedBy: 'auth-service' })}'::jsonb) AS id`;
    const denied = (error: unknown) => typeof error === 'object' && error !== null && 'code' in error && error.code === '42501';
    try {
      await assert.rejects(client.query(call), denied, 'callable without USAGE on the schema');
      await db.pool.query(`GRANT USAGE ON SCHEMA session_janitor TO ${role}`);
      await assert.rejects(client.query(call), denied, 'PUBLIC may execute the function');
      await db.pool.query(`GRANT EXECUTE ON FUNCTION session_janitor.enqueue_revocation(jsonb, text), session_janitor.revocation_status(uuid) TO ${role}`);

      const { rows } = await client.query<{ id: string }>(call);
      const id = rows[0]?.id;
      assert.ok(id);
      assert.deepEqual(await waitForRevocation(client, id, { intervalMs: 50 }), { revoked: 2 });

      await assert.rejects(client.query('SELECT count(*) FROM auth.refresh_session'), denied);
      await assert.rejects(client.query('DELETE FROM auth.refresh_session'), denied);
      await assert.rejects(client.query(`INSERT INTO pgboss.job (name, data) VALUES ('${QUEUES.revoke}', '{}')`), denied);
      await assert.rejects(client.query('SELECT count(*) FROM pgboss.job'), denied);
    } finally {
      await client.end();
    }
    assert.deepEqual(await remainingIds(db.pool).then((ids) => ids.filter((i) => sessions.some((s) => s.id === i))), [sessions[2]?.id]);
  });
});

/** Enqueues the same request through the SQL function and boss.send (the client); both jobs carry the queue's settings alike. */
async function assertSqlJobMatchesSend(pool: pg.Pool, boss: PgBoss): Promise<[string, string]> {
  const request = { userId: 2_000_000_000, reason: 'settings' };
  const viaSql = (
    await pool.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb, $2) AS id', [
      JSON.stringify(request),
      `settings-sql-${randomUUID()}`,
    ])
  ).rows[0]?.id;
  const viaClient = await enqueueRevocation(boss, request, { singletonKey: `settings-client-${randomUUID()}` });
  assert.ok(viaSql && viaClient);
  const { rows } = await pool.query(
    `SELECT id, priority, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds,
            extract(epoch FROM keep_until - start_after)::int AS retention_seconds, policy, dead_letter, heartbeat_seconds,
            singleton_on, singleton_key IS NOT NULL AS keyed, blocked, blocking, pending_dependencies
       FROM pgboss.job WHERE name = $1 AND id = ANY($2::uuid[])`,
    [QUEUES.revoke, [viaSql, viaClient]],
  );
  const strip = (row: Record<string, unknown> | undefined) => {
    assert.ok(row);
    const { id: _id, ...rest } = row;
    return rest;
  };
  const sqlJob = strip(rows.find((r) => r.id === viaSql));
  assert.deepEqual(sqlJob, strip(rows.find((r) => r.id === viaClient)));
  const { rows: queue } = await pool.query(
    `SELECT retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds, retention_seconds, policy, dead_letter, heartbeat_seconds FROM pgboss.queue WHERE name = $1`,
    [QUEUES.revoke],
  );
  for (const [column, value] of Object.entries(queue[0] ?? {})) assert.deepEqual(sqlJob[column], value, column);
  assert.equal(sqlJob.dead_letter, QUEUES.deadLetter);
  return [viaSql, viaClient];
}

/** A database installed as the release with migrations 1..version did it, then upgraded by today's `migrate`. */
async function createUpgradedDatabase(version: number): Promise<{ url: string; pool: pg.Pool; drop(): Promise<void> }> {
  const admin = process.env.SJ_TEST_ADMIN_URL;
  assert.ok(admin);
  const name = `sj_upgrade_${randomBytes(5).toString('hex')}`;
  const adminClient = new pg.Client({ connectionString: admin });
  await adminClient.connect();
  await adminClient.query(`CREATE DATABASE ${name}`);
  await adminClient.end();
  const url = databaseUrl(admin, name);
  const config = testConfig(url);
  const log = silentLogger();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  await createAuthTables(pool);
  const boss = createBoss(config, url, { role: 'tool', migrate: true }, log);
  await boss.start();
  try {
    assert.deepEqual(
      await migrateOwnSchema(pool, config, version),
      Array.from({ length: version }, (_, i) => i + 1),
    );
    await ensureQueues(boss, config);
    await install(boss, pool, config, log, true);
    assert.equal(await readVersion(pool), LATEST_VERSION);
  } finally {
    await boss.stop({ graceful: false });
  }
  return {
    url,
    pool,
    drop: async () => {
      await closePool(pool);
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
