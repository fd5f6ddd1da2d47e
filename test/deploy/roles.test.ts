/**
 * sql/roles.sql on a real database, the way docs/deployment.md deploys it: a database with only the
 * auth tables (no pg-boss, no session_janitor schema), the script run twice as the superuser, then
 * `session-janitor migrate` as the migrator, the script again, and the worker as the runtime role with
 * JANITOR_MIGRATE=false. Each role can do its job, and each right it must not have is tried with a
 * real statement that must fail with insufficient_privilege (42501).
 *
 * Roles are cluster-wide: the script runs with its four role names replaced by names unique to this
 * run (nothing else in it changes), and after() drops the database and then the roles.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { createBoss } from '../../src/boss.ts';
import { SQLSTATE, sqlState } from '../../src/db/errors.ts';
import { createLogger } from '../../src/logger.ts';
import { startWorker, type Worker } from '../../src/worker.ts';
import { QUEUES, SESSION_TABLE_PRIVILEGES } from '../../src/queues.ts';
import { closePool, databaseUrl, insertSessions, silentLogger, testConfig } from '../helpers/database.ts';
import { runCli } from '../helpers/process.ts';
import { until } from '../helpers/wait.ts';

const ROOT = new URL('../../', import.meta.url);
const KINDS = ['migrator', 'worker', 'producer', 'global_revoker'] as const;
type Kind = (typeof KINDS)[number];

const tag = randomBytes(4).toString('hex');
const ROLE: Readonly<Record<Kind, string>> = {
  migrator: `sjt_${tag}_migrator`,
  worker: `sjt_${tag}_worker`,
  producer: `sjt_${tag}_producer`,
  global_revoker: `sjt_${tag}_global_revoker`,
};
const DATABASE = `sj_roles_${tag}`;
/**
 * No scheduled purge or reap during the test (a tick would take the exclusive queue's slot from the
 * job the test sends); migrate and the worker share it, as the Job and the Deployment share a ConfigMap.
 */
const NO_SCHEDULE = { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' } as const;
/** A job's states that end a wait: a retry is the first failure, shown at once rather than retried. */
const ENDED: readonly string[] = ['completed', 'failed', 'retry', 'cancelled'];

function adminUrl(): string {
  const url = process.env.SJ_TEST_ADMIN_URL;
  if (!url) throw new Error('SJ_TEST_ADMIN_URL is unset: run with --test-global-setup=test/setup/global.ts');
  return url;
}

/** sql/roles.sql with the four role names of this run; nothing else changes. */
async function rolesScript(): Promise<string> {
  const text = await readFile(new URL('sql/roles.sql', ROOT), 'utf8');
  const script = text.replace(/\bsession_janitor_(migrator|worker|producer|global_revoker)\b/g, (_, kind: Kind) => ROLE[kind]);
  assert.doesNotMatch(script, /session_janitor_(migrator|worker|producer|global_revoker)/);
  for (const kind of KINDS) assert.ok(script.includes(ROLE[kind]), `roles.sql does not name the ${kind} role`);
  return script;
}

/** Rejects unless the statement fails with insufficient_privilege. */
async function denied(db: pg.Pool | pg.Client, sql: string, values: unknown[] = []): Promise<void> {
  await assert.rejects(
    db.query(sql, values),
    (error: unknown) => {
      assert.equal(sqlState(error), SQLSTATE.insufficientPrivilege, `${sql}: ${error instanceof Error ? error.message : String(error)}`);
      return true;
    },
    `${sql} succeeded`,
  );
}

describe('sql/roles.sql: least privilege, on a fresh database', { timeout: 120_000 }, () => {
  let script: string;
  /** The superuser, in the test database. */
  let superuser: pg.Pool;
  const url = {} as Record<Kind, string>;
  const pools: pg.Pool[] = [];
  const clients: pg.Client[] = [];
  let worker: Worker | undefined;
  let databaseCreated = false;

  const poolAs = (kind: Kind): pg.Pool => {
    const pool = new pg.Pool({ connectionString: url[kind], max: 2 });
    pools.push(pool);
    return pool;
  };

  before(async () => {
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${DATABASE} TEMPLATE template0`);
      databaseCreated = true;
    } finally {
      await admin.end();
    }
    superuser = new pg.Pool({ connectionString: databaseUrl(adminUrl(), DATABASE), max: 2 });
    await superuser.query(await readFile(new URL('sql/auth.sql', ROOT), 'utf8'));
    script = await rolesScript();
    // Twice: the script is idempotent (a simple query, so the whole script is one transaction, as
    // with psql -1).
    await superuser.query(script);
    await superuser.query(script);
    for (const kind of KINDS) {
      const password = randomBytes(12).toString('hex');
      await superuser.query(`ALTER ROLE ${pg.escapeIdentifier(ROLE[kind])} PASSWORD ${pg.escapeLiteral(password)}`);
      const u = new URL(databaseUrl(adminUrl(), DATABASE));
      u.username = ROLE[kind];
      u.password = password;
      url[kind] = u.toString();
    }
  });

  after(async () => {
    await worker?.stop();
    for (const client of clients) await client.end().catch(() => {});
    for (const pool of pools) await closePool(pool);
    if (superuser) await closePool(superuser);
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    try {
      // The roles' grants and default privileges live in this database: drop it first, then the roles.
      if (databaseCreated) await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
      for (const kind of KINDS) await admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(ROLE[kind])}`);
      const left = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_roles WHERE rolname = ANY($1)', [Object.values(ROLE)]);
      assert.equal(left.rows[0]?.n, 0, 'roles left behind');
    } finally {
      await admin.end();
    }
  });

  test('the roles log in, are neither superuser nor able to create roles or databases; the migrator owns both schemas', async () => {
    const { rows } = await superuser.query<{
      rolname: string;
      rolcanlogin: boolean;
      rolsuper: boolean;
      rolcreatedb: boolean;
      rolcreaterole: boolean;
      rolbypassrls: boolean;
    }>('SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname', [
      Object.values(ROLE),
    ]);
    assert.equal(rows.length, KINDS.length);
    for (const { rolname, ...attributes } of rows) {
      assert.deepEqual(attributes, { rolcanlogin: true, rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolbypassrls: false }, rolname);
    }
    const owners = await superuser.query<{ nspname: string; owner: string }>(
      `SELECT nspname, pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname IN ('pgboss', 'session_janitor') ORDER BY nspname`,
    );
    assert.deepEqual(owners.rows, [
      { nspname: 'pgboss', owner: ROLE.migrator },
      { nspname: 'session_janitor', owner: ROLE.migrator },
    ]);
  });

  test('start with JANITOR_MIGRATE=false before any migration: exit 1, one line that says to run `npx session-janitor migrate`', async () => {
    const result = await runCli(['start'], {
      DATABASE_URL: url.worker,
      JANITOR_MIGRATE: 'false',
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
    }).finished;
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stderr, /^session-janitor: .*run `npx session-janitor migrate`/m, result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /^\s+at /m, 'no stack trace');
    // It changed nothing: pg-boss is not installed, the own schema is empty.
    const { rows } = await superuser.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('pgboss', 'session_janitor')`,
    );
    assert.equal(rows[0]?.n, 0);
  });

  test('migrate as the migrator exits 0, twice; the producer may call the functions once roles.sql has run again', async () => {
    for (const run of [1, 2]) {
      const result = await runCli(['migrate'], { DATABASE_URL: url.migrator, LOG_LEVEL: 'warn', ...NO_SCHEDULE }).finished;
      assert.equal(result.code, 0, `run ${run}:\n${result.stdout}${result.stderr}`);
    }
    const producer = poolAs('producer');
    // PUBLIC has no EXECUTE on what the migrator creates, and the producer's grant names functions
    // that exist only now: until the script runs again, the producer can call nothing.
    await denied(producer, `SELECT session_janitor.enqueue_revocation('{"userId": 1, "reason": "x"}'::jsonb)`);
    await denied(producer, `SELECT * FROM session_janitor.revocation_status(gen_random_uuid())`);
    await superuser.query(script);
    await superuser.query(script);
    const grants = await superuser.query<{ fn: string; grantees: string[] }>(
      `SELECT p.oid::regprocedure::text AS fn,
              array(SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC')::text FROM aclexplode(p.proacl) a WHERE a.privilege_type = 'EXECUTE' ORDER BY 1) AS grantees
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'session_janitor' ORDER BY 1`,
    );
    assert.deepEqual(grants.rows, [
      { fn: 'session_janitor.enqueue_global_revocation(jsonb,text)', grantees: [ROLE.migrator, ROLE.global_revoker].sort() },
      { fn: 'session_janitor.enqueue_revocation(jsonb,text)', grantees: [ROLE.migrator, ROLE.producer].sort() },
      // Called by the two functions only (they run as the migrator): no one else's.
      { fn: 'session_janitor.insert_revocation(jsonb,text)', grantees: [ROLE.migrator] },
      { fn: 'session_janitor.revocation_by_key(text)', grantees: [ROLE.migrator, ROLE.global_revoker, ROLE.producer].sort() },
      // Pure, and called by the worker for every revocation (migration 7): everyone's.
      { fn: 'session_janitor.revocation_shape_issue(jsonb)', grantees: ['PUBLIC', ROLE.migrator].sort() },
      { fn: 'session_janitor.revocation_status(uuid)', grantees: [ROLE.migrator, ROLE.global_revoker, ROLE.producer].sort() },
    ]);
    // The migrator installs, but reads no auth table.
    await denied(poolAs('migrator'), 'SELECT count(*) FROM auth.refresh_session');
  });

  test('the worker as the runtime role (JANITOR_MIGRATE=false) purges, reaps and carries out a revocation enqueued by the producer', async () => {
    const sessions = await insertSessions(superuser, [
      { expiresIn: -3600 }, // expired
      { expiresIn: -60 }, // expired
      { expiresIn: 86_400, idleFor: 2 * 3600 }, // idle
      { expiresIn: 86_400, idleFor: 3 * 3600 }, // idle
      { expiresIn: 86_400, user: 4 }, // revoked (user of index 4)
      { expiresIn: 86_400, user: 4 }, // revoked
      { expiresIn: 86_400 }, // kept
      { expiresIn: -120 }, // expired, but locked by a refresh in flight
      { expiresIn: 86_400, idleFor: 4 * 3600 }, // idle, but locked by a refresh in flight
    ]);
    const ids = (from: number, to: number) => sessions.slice(from, to).map((s) => s.id);
    // A refresh in flight holds two rows, the idle one inside a savepoint: the purge and the reaper
    // wait lock_timeout, then take the rest, leaving out the held rows by xmax, and the reaper by id
    // (tasks/held-rows.ts), with no more than SELECT and DELETE.
    const locker = new pg.Client({ connectionString: databaseUrl(adminUrl(), DATABASE) });
    locker.on('error', () => {});
    clients.push(locker);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT id FROM auth.refresh_session WHERE id = ANY($1) FOR UPDATE', [ids(7, 8)]);
    await locker.query('SAVEPOINT s');
    await locker.query('SELECT id FROM auth.refresh_session WHERE id = ANY($1) FOR UPDATE', [ids(8, 9)]);
    const present = async (list: number[]) =>
      (await superuser.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE id = ANY($1) ORDER BY id', [list])).rows.map((r) => r.id);

    const logLines: string[] = [];
    const log = createLogger('warn', { write: (line: string) => void logLines.push(line) });
    worker = await startWorker(
      testConfig(url.worker, {
        ...NO_SCHEDULE,
        JANITOR_MIGRATE: 'false',
        JANITOR_IDLE_TIMEOUT: '1h',
        // The supervisor, the monitor and the gauges run during the test, as the runtime role.
        JANITOR_SUPERVISE_INTERVAL: '1s',
        JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
        LOG_LEVEL: 'warn',
      }),
      log,
    );

    const sender: PgBoss = createBoss(testConfig(url.worker), url.worker, { role: 'tool', migrate: false }, silentLogger());
    await sender.start();
    let purgeId: string | null;
    let reapId: string | null;
    try {
      purgeId = await sender.send(QUEUES.purgeExpired, {});
      reapId = await sender.send(QUEUES.reapIdle, {});
    } finally {
      await sender.stop({ graceful: false });
    }
    assert.ok(purgeId && reapId, 'a purge or reap job was queued already');

    const producer = poolAs('producer');
    const user = sessions[4]?.userId;
    const enqueued = await producer.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb, $2) AS id', [
      JSON.stringify({ userId: user, reason: 'roles-test', requestedBy: 'roles.test.ts' }),
      `roles-test-${tag}`,
    ]);
    const revokeId = enqueued.rows[0]?.id;
    assert.ok(revokeId);

    const job = async (id: string) =>
      (
        await superuser.query<{ state: string; output: { deleted?: number; stoppedBy?: string } | null }>(
          'SELECT state::text, output FROM pgboss.job WHERE id = $1',
          [id],
        )
      ).rows[0];
    for (const [name, id, deleted] of [
      ['purge', purgeId, 2],
      ['reap', reapId, 2],
    ] as const) {
      const done = await until(`the ${name} job to end`, async () => {
        const row = await job(id);
        return ENDED.includes(row?.state ?? '') && row;
      });
      assert.equal(done.state, 'completed', `${name}: ${JSON.stringify(done)}`);
      assert.equal(done.output?.deleted, deleted, `${name}: ${JSON.stringify(done.output)}`);
      assert.equal(done.output?.stoppedBy, 'drained');
    }

    // Read as the producer.
    const status = await until('the revocation to end (read as the producer)', async () => {
      const { rows } = await producer.query<{ state: string; output: unknown }>('SELECT state, output FROM session_janitor.revocation_status($1)', [revokeId]);
      return ENDED.includes(rows[0]?.state ?? '') && rows[0];
    });
    assert.deepEqual(status, { state: 'completed', output: { revoked: 2 } });

    assert.deepEqual(await present(ids(0, 2)), [], 'the expired sessions are gone');
    assert.deepEqual(await present(ids(2, 4)), [], 'the idle sessions are gone');
    assert.deepEqual(await present(ids(4, 6)), [], 'the revoked sessions are gone');
    assert.deepEqual(await present(ids(6, 7)), ids(6, 7), 'the live session stays');
    await locker.query('ROLLBACK');
    assert.deepEqual(await present(ids(7, 9)), ids(7, 9), 'the locked sessions were skipped (the next run takes them)');

    // Let the supervisor, the monitor and the gauge refresh run a few times as the runtime role.
    await until('the last-success gauge of the purge', async () =>
      (await worker?.metrics.lastSuccess.get())?.values.some((v) => v.labels.task === 'purge-expired' && v.value > 0),
    );
    await sleep(2_500);
    // The locked rows cost a lock timeout each to the purge and the reaper (so both took the
    // SKIP LOCKED path); nothing else may have failed.
    const counted = (await worker.metrics.errors.get()).values;
    assert.ok((counted.find((v) => v.labels.kind === 'lock-timeout')?.value ?? 0) >= 2, JSON.stringify(counted));
    const errors = counted.filter((v) => v.value > 0 && v.labels.kind !== 'lock-timeout');
    assert.deepEqual(errors, [], 'no database, pg-boss or gauge error as the runtime role');
    const bad = logLines.filter((line) => /"level":"(error|fatal)"|permission denied/.test(line));
    assert.deepEqual(bad, []);
    await worker.stop();
    worker = undefined;
  });

  test('the runtime role cannot write auth.refresh_session, touch auth."user", or create anything', async () => {
    const [session] = await insertSessions(superuser, [{ expiresIn: 86_400 }]);
    assert.ok(session);
    const snapshot = async () =>
      (await superuser.query<{ row: unknown }>('SELECT to_jsonb(s) AS row FROM auth.refresh_session s WHERE id = $1', [session.id])).rows[0]?.row;
    const before = await snapshot();
    assert.ok(before);
    const db = poolAs('worker');
    // What it may do (the purge, the reaper and the revocations need no more).
    await db.query('SELECT id FROM auth.refresh_session WHERE id = $1', [session.id]);
    await db.query('DELETE FROM auth.refresh_session WHERE id = -1');

    // Its rights in auth, as the catalogue has them: on the table, what the tasks declare they need
    // (queues.ts: SELECT and DELETE), nothing else.
    const tableRights = await superuser.query<{ object: string; privilege: string }>(
      `SELECT c.oid::regclass::text AS object, a.privilege_type AS privilege
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
        WHERE n.nspname = 'auth' AND a.grantee = $1::regrole ORDER BY 1, 2`,
      [ROLE.worker],
    );
    assert.deepEqual(
      tableRights.rows,
      [...SESSION_TABLE_PRIVILEGES].sort().map((privilege) => ({ object: 'auth.refresh_session', privilege })),
    );
    assert.deepEqual([...SESSION_TABLE_PRIVILEGES].sort(), ['DELETE', 'SELECT']);
    const columnRights = await superuser.query<{ object: string; privilege: string }>(
      `SELECT c.oid::regclass::text || '.' || at.attname AS object, a.privilege_type AS privilege
         FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(at.attacl) a
        WHERE n.nspname = 'auth' AND a.grantee = $1::regrole ORDER BY 1, 2`,
      [ROLE.worker],
    );
    assert.deepEqual(columnRights.rows, []);

    // Every column of the table is read-only to it.
    const columns = await superuser.query<{ name: string; identity: boolean }>(
      `SELECT attname AS name, attidentity <> '' AS identity FROM pg_attribute
        WHERE attrelid = 'auth.refresh_session'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    );
    assert.equal(columns.rows.length, 9);
    for (const column of columns.rows) {
      const value = column.identity ? 'DEFAULT' : pg.escapeIdentifier(column.name);
      await denied(db, `UPDATE auth.refresh_session SET ${pg.escapeIdentifier(column.name)} = ${value} WHERE id = $1`, [session.id]);
    }
    await denied(db, 'UPDATE auth.refresh_session SET last_used_at = now(), expires_at = expires_at + interval $$1 year$$ WHERE id = $1', [session.id]);
    await denied(db, `INSERT INTO auth.refresh_session (user_id, expires_at) VALUES ($1, now() + interval '1 day')`, [session.userId]);
    await denied(db, 'TRUNCATE auth.refresh_session');
    await denied(db, 'SELECT id FROM auth."user" LIMIT 1');
    await denied(db, `UPDATE auth."user" SET email = email WHERE id = $1`, [session.userId]);
    await denied(db, 'DELETE FROM auth."user" WHERE id = $1', [session.userId]);
    await denied(db, `INSERT INTO auth."user" (email) VALUES ('intruder@example.invalid')`);

    await denied(db, `CREATE SCHEMA sj_intruder_${tag}`);
    for (const schema of ['auth', 'pgboss', 'session_janitor']) {
      await denied(db, `CREATE TABLE ${schema}.sj_intruder (id int)`);
    }
    await denied(db, 'CREATE FUNCTION pgboss.sj_intruder() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$');
    await denied(db, 'ALTER TABLE pgboss.job ADD COLUMN sj_intruder int');
    await denied(db, 'DROP TABLE session_janitor.reap_position');
    // PostgreSQL 15 took CREATE on schema public away from PUBLIC; before 15, revoke it yourself
    // (docs/deployment.md).
    const version = Number((await db.query<{ v: string }>('SHOW server_version_num')).rows[0]?.v);
    if (version >= 150_000) await denied(db, 'CREATE TABLE public.sj_intruder (id int)');

    assert.deepEqual(await snapshot(), before, 'the session is untouched');
  });

  test('the global revoker enqueues issuedBefore for every user (never later than now() + 5 minutes), and can do nothing else', async () => {
    const db = poolAs('global_revoker');
    const everyone = (issuedBefore: string) => JSON.stringify({ issuedBefore, reason: 'roles-test' });
    const id = (await db.query<{ id: string | null }>('SELECT session_janitor.enqueue_global_revocation($1::jsonb) AS id', [everyone('2000-01-01T00:00:00Z')]))
      .rows[0]?.id;
    assert.ok(id);
    assert.equal((await db.query('SELECT * FROM session_janitor.revocation_status($1)', [id])).rows.length, 1);
    await assert.rejects(db.query('SELECT session_janitor.enqueue_global_revocation($1::jsonb)', [everyone('9999-12-31T23:59:59Z')]), /5 minutes/);
    await denied(db, 'SELECT session_janitor.enqueue_revocation($1::jsonb)', [JSON.stringify({ userId: 1, reason: 'roles-test' })]);
    await denied(db, 'SELECT session_janitor.insert_revocation($1::jsonb, NULL)', [everyone('2000-01-01T00:00:00Z')]);
    await denied(db, 'SELECT id FROM auth.refresh_session LIMIT 1');
    await denied(db, 'SELECT id FROM pgboss.job LIMIT 1');
    await denied(db, `INSERT INTO pgboss.job (name, data) VALUES ($1, $2)`, [QUEUES.revoke, everyone('9999-12-31T23:59:59Z')]);
  });

  test('the producer can call the two functions and nothing else', async () => {
    const db = poolAs('producer');
    const id = (
      await db.query<{ id: string | null }>(`SELECT session_janitor.enqueue_revocation('{"userIds": [2147483647], "reason": "roles-test"}'::jsonb) AS id`)
    ).rows[0]?.id;
    assert.ok(id);
    assert.equal((await db.query('SELECT * FROM session_janitor.revocation_status($1)', [id])).rows.length, 1);

    // issuedBefore without userId reaches every user: not with the per-user producer's grant, by any path.
    const everyone = JSON.stringify({ issuedBefore: '2000-01-01T00:00:00Z', reason: 'roles-test' });
    await denied(db, 'SELECT session_janitor.enqueue_revocation($1::jsonb)', [everyone]);
    await denied(db, 'SELECT session_janitor.enqueue_global_revocation($1::jsonb)', [everyone]);
    await denied(db, 'SELECT session_janitor.insert_revocation($1::jsonb, NULL)', [everyone]);
    const oneUser = JSON.stringify({ userId: 2147483647, issuedBefore: '2000-01-01T00:00:00Z', reason: 'roles-test' });
    assert.ok((await db.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [oneUser])).rows[0]?.id);

    await denied(db, 'SELECT id FROM auth.refresh_session LIMIT 1');
    await denied(db, 'DELETE FROM auth.refresh_session WHERE id = -1');
    await denied(db, 'SELECT id FROM pgboss.job LIMIT 1');
    await denied(db, `INSERT INTO pgboss.job (name, data) VALUES ($1, '{"userId": 1, "reason": "forged"}')`, [QUEUES.revoke]);
    await denied(db, 'SELECT * FROM session_janitor.reap_position');
    await denied(db, 'SELECT * FROM session_janitor.migration');
    await denied(db, `CREATE TABLE session_janitor.sj_intruder (id int)`);
    await denied(db, `CREATE SCHEMA sj_intruder_${tag}`);
  });
});
