/**
 * One-shot commands write their result to stdout and their logs to stderr, and every failure names
 * its real cause, on a real server: a closed port, a wrong password, a database without the auth
 * table, one without pg-boss, the metrics port taken.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../src/db/embedded.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

describe('status: the result on stdout, the hints on stderr', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('`status --json` at the default log level: stdout is one JSON document (`| jq .` works)', async () => {
    const result = await runCli(['status', '--json'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 0, result.stderr);
    const status = JSON.parse(result.stdout) as { queues: unknown[] };
    assert.ok(Array.isArray(status.queues));
    assert.match(result.stderr, /using the database of DATABASE_URL/, 'the logs go to stderr');
  });

  test('a closed port: the host and port that do not answer', async () => {
    const port = await freePort();
    const result = await runCli(['status'], { DATABASE_URL: `postgres://janitor:pw@127.0.0.1:${port}/auth` }).finished;
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^session-janitor: the database at 127\\.0\\.0\\.1:${port} does not answer \\(ECONNREFUSED\\)`, 'm'));
    assert.doesNotMatch(result.stderr, /migrate/);
  });

  test('a wrong password: authentication failed for the user', async () => {
    const url = new URL(db.url);
    url.password = 'Wr0ng-Passw0rd-xyz';
    const result = await runCli(['status'], { DATABASE_URL: url.toString() }).finished;
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^session-janitor: authentication failed for user ${decodeURIComponent(url.username)} at 127\\.0\\.0\\.1`, 'm'));
    assert.doesNotMatch(result.stderr, /migrate|Wr0ng-Passw0rd-xyz/);
  });

  test('a database without auth.refresh_session: is DATABASE_URL the auth database?', async () => {
    await db.pool.query('DROP TABLE auth.refresh_session CASCADE');
    try {
      const result = await runCli(['status'], { DATABASE_URL: db.url }).finished;
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^session-janitor: database sj_test_\w+ has no auth\.refresh_session: is DATABASE_URL the auth database\?/m);
    } finally {
      await db.drop();
      db = await createTestDatabase();
    }
  });

  test('a database without pg-boss: run migrate', async () => {
    await db.pool.query('DROP SCHEMA pgboss CASCADE');
    const result = await runCli(['status'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^session-janitor: pg-boss is not installed in schema pgboss of sj_test_\w+: run `npx session-janitor migrate`/m);
  });
});

test('start with the metrics port taken names JANITOR_METRICS_PORT', { timeout: 60_000 }, async () => {
  const db = await createTestDatabase();
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '0.0.0.0', resolve));
  const address = taken.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  try {
    const result = await runCli(['start'], { DATABASE_URL: db.url, JANITOR_METRICS_PORT: String(port) }).finished;
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`^session-janitor: port ${port} is in use \\(EADDRINUSE\\): set JANITOR_METRICS_PORT to a free port`, 'm'));
  } finally {
    taken.close();
    await db.drop();
  }
});

describe('sslmode as libpq means it, unix sockets named as such', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let socketUrl: (password: string, port?: string) => string;
  before(async () => {
    db = await createTestDatabase();
    const url = new URL(db.url);
    // The test server (no SSL) also listens on its unix socket, in /tmp.
    socketUrl = (password, port = url.port) => `postgres://${url.username}:${password}@/${url.pathname.slice(1)}?host=/tmp&port=${port}`;
  });
  after(async () => {
    await db?.drop();
  });

  for (const mode of ['prefer', 'allow']) {
    test(`sslmode=${mode} (libpq falls back to plain text; node-postgres cannot): exit 78, one line that says what to use`, async () => {
      const result = await runCli(['status'], { DATABASE_URL: `${db.url}?sslmode=${mode}` }).finished;
      assert.equal(result.code, 78, result.stderr);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^session-janitor: configuration error: DATABASE_URL=.* is invalid: sslmode=${mode} .*use sslmode=require`));
    });
  }

  test('sslmode=require against a server without SSL: one line naming the server and the fix, no security warning', async () => {
    const result = await runCli(['status'], { DATABASE_URL: `${db.url}?sslmode=require` }).finished;
    assert.equal(result.code, 1);
    const host = new URL(db.url).host;
    assert.match(
      result.stderr,
      new RegExp(`^session-janitor: the database at ${host.replaceAll('.', '\\.')} does not support SSL connections, .*sslmode=disable`, 'm'),
    );
    assert.doesNotMatch(result.stderr, /SECURITY WARNING/);
  });

  test('a unix socket URL with a wrong password names the user and the socket', async () => {
    const result = await runCli(['status'], { DATABASE_URL: socketUrl('Wr0ng-Passw0rd-xyz') }).finished;
    assert.equal(result.code, 1, result.stderr);
    const url = new URL(db.url);
    assert.match(
      result.stderr,
      new RegExp(`^session-janitor: authentication failed for user ${url.username} at the socket /tmp/\\.s\\.PGSQL\\.${url.port} `, 'm'),
    );
  });

  test('a unix socket URL with a wrong port: the socket that does not answer', async () => {
    const port = String(await freePort());
    const result = await runCli(['status'], { DATABASE_URL: socketUrl('pw', port) }).finished;
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, new RegExp(`^session-janitor: the database at the socket /tmp/\\.s\\.PGSQL\\.${port} does not answer \\(ENOENT\\)`, 'm'));
  });
});

describe('the wrong table, the wrong role: the message names the table and the role it needs', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  const role = `sj_producer_${Math.random().toString(36).slice(2, 10)}`;
  before(async () => {
    db = await createTestDatabase();
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'producer-test'`);
  });
  after(async () => {
    await db?.drop();
    const admin = new URL(db.url);
    admin.pathname = '/postgres';
    const { default: pg } = await import('pg');
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    await client.query(`DROP ROLE IF EXISTS ${role}`);
    await client.end();
  });

  test('JANITOR_SESSION_TABLE=auth.user (a table, not the sessions table): the table and its missing columns', async () => {
    for (const command of ['status', 'purge-expired']) {
      const result = await runCli([command], { DATABASE_URL: db.url, JANITOR_SESSION_TABLE: 'auth.user' }).finished;
      assert.equal(result.code, 1, result.stderr);
      assert.match(
        result.stderr,
        /^session-janitor: auth\.user has no column jti, user_id, last_used_at, expires_at: is JANITOR_SESSION_TABLE the sessions table/m,
      );
    }
  });

  test('revoke of every user (--issued-before alone) as a role without its grant: the role it needs', async () => {
    const url = new URL(db.url);
    url.username = role;
    url.password = 'producer-test';
    const result = await runCli(['revoke', '--issued-before', '2020-01-01T00:00:00Z', '--reason', 'rotated'], { DATABASE_URL: url.toString() }).finished;
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /^session-janitor: permission denied .*: this request needs the role session_janitor_global_revoker of sql\/roles\.sql/m);
  });

  test('status as a role without USAGE on schema auth: the role, and the role it needs', async () => {
    const url = new URL(db.url);
    url.username = role;
    url.password = 'producer-test';
    const result = await runCli(['status'], { DATABASE_URL: url.toString() }).finished;
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      new RegExp(
        `^session-janitor: ${role} may not look up auth\\.refresh_session \\(permission denied for schema auth.*session_janitor_worker of sql/roles\\.sql`,
        'm',
      ),
    );
  });
});
