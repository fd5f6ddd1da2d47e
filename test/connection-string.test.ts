/**
 * DATABASE_URL in every form libpq and node-pg accept (issue 17.11): a password in the user info or
 * as a query parameter (`password=`, `sslpassword=`), a host as a unix socket directory (`host=`
 * or a percent-encoded path). The password never shows, whatever the path it takes to the output.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { ConfigError, loadConfig } from '../src/config.ts';
import { describeDatabase } from '../src/db/connection-string.ts';
import { safeErrorMessage } from '../src/db/errors.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const SECRET = /S3CRET|K3Y/;

/** Valid forms, and the host describeDatabase must name. */
const VALID: ReadonlyArray<{ url: string; host: string }> = [
  { url: 'postgres:///auth?host=/var/run/postgresql&password=S3CRET', host: '/var/run/postgresql' },
  { url: 'postgresql://janitor@db.internal/auth?password=S3CRET&sslpassword=K3Y', host: 'db.internal' },
  { url: 'postgres://janitor:S3CRET@db.internal:6432/auth?sslpassword=K3Y', host: 'db.internal:6432' },
  { url: 'postgres://janitor@%2Fvar%2Frun%2Fpostgresql/auth?pass%77ord=S3CRET', host: '/var/run/postgresql' },
  { url: 'postgres://janitor@/auth?host=%2Ftmp&port=6543&password=S3CRET', host: '/tmp:6543' },
];

/** Forms the configuration refuses: another scheme, no host at all, a port out of range. */
const INVALID = [
  'mysql:///auth?host=/var/run/postgresql&password=S3CRET',
  'postgres:///auth?password=S3CRET&sslpassword=K3Y',
  'postgres://janitor:S3CRET@db.internal:99999/auth',
  'postgresql://janitor@db.internal:99999/auth?password=S3CRET',
];

describe('DATABASE_URL forms', () => {
  test('the configuration accepts every valid form, the socket ones included', () => {
    for (const { url } of VALID) assert.equal(loadConfig({ DATABASE_URL: url }).databaseUrl, url);
  });

  test('a refused DATABASE_URL is reported without its password, in every form', () => {
    for (const url of INVALID) {
      assert.throws(
        () => loadConfig({ DATABASE_URL: url }),
        (error: unknown) => error instanceof ConfigError && error.variable === 'DATABASE_URL' && !SECRET.test(error.message),
        url,
      );
    }
  });

  test('the exit-78 message of the command never shows the password', async () => {
    for (const url of INVALID.slice(0, 2)) {
      const result = await runCli(['migrate'], { DATABASE_URL: url }).finished;
      assert.equal(result.code, 78, result.stderr);
      assert.match(result.stderr, /DATABASE_URL=/);
      assert.doesNotMatch(result.stdout + result.stderr, SECRET);
    }
  });

  test('describeDatabase names the host or the socket directory, never the password', () => {
    for (const { url, host } of VALID) {
      const described = describeDatabase(url);
      assert.doesNotMatch(described, SECRET, url);
      assert.ok(described.startsWith(host), `${url}: ${described}`);
      assert.ok(described.includes('/auth'), `${url}: ${described}`);
    }
  });

  test('error messages lose every password, in a URL or as a keyword', () => {
    for (const url of [...VALID.map((v) => v.url), ...INVALID]) {
      assert.doesNotMatch(safeErrorMessage(new Error(`could not connect to ${url}: refused`)), SECRET, url);
    }
    assert.doesNotMatch(safeErrorMessage(new Error("host=/tmp password=S3CRET sslpassword='K3Y' dbname=auth")), SECRET);
  });
});

describe('a unix socket connection', () => {
  let db: TestDatabase;
  let socketDir = '';
  before(async () => {
    db = await createTestDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    socketDir =
      (await client.query<{ dirs: string }>('SELECT current_setting($1) AS dirs', ['unix_socket_directories'])).rows[0]?.dirs.split(',')[0]?.trim() ?? '';
    await client.end();
  });
  after(async () => {
    await db.drop();
  });

  test('a command with `postgres:///db?host=/socket/dir&password=...` connects, and its log names the socket, not the password', async (t) => {
    if (socketDir === '') return t.skip('the test server listens on no unix socket');
    const tcp = new URL(db.url);
    const url = `postgres:///${tcp.pathname.slice(1)}?host=${socketDir}&port=${tcp.port}&user=${tcp.username}&password=${tcp.password}`;
    const result = await runCli(['purge-expired', '--dry-run'], { DATABASE_URL: url }).finished;
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /dry run: 0 sessions would be purged/);
    assert.ok(!(result.stdout + result.stderr).includes(decodeURIComponent(tcp.password)), 'the password is in the output');
    assert.ok(result.stderr.includes(`${socketDir}:${tcp.port}/`), result.stderr);
  });
});
