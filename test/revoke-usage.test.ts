/**
 * `revoke` refuses an invalid request the way the README says scripts can rely on: exit 64
 * (EX_USAGE), every issue listed, nothing enqueued; an unknown option or a mistyped command is one
 * line and 64 too, never the full help.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

describe('revoke: an invalid request exits 64 with every issue, nothing enqueued', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  const queued = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'refresh-session.revoke'")).rows[0]?.n;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  test('no --reason and no selector: both issues listed', async () => {
    const result = await runCli(['revoke'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 64, result.stderr);
    assert.match(result.stderr, /^session-janitor: invalid revocation request:\n {2}- a selector is required.*\n {2}- reason is required/m);
    assert.doesNotMatch(result.stderr, /Usage:/, 'not the full help');
  });

  test('--user without --reason: 64, the missing reason named', async () => {
    const result = await runCli(['revoke', '--user', '42'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 64, result.stderr);
    assert.match(result.stderr, /- reason is required/);
    assert.equal(await queued(), 0);
  });

  test('an unknown option: 64, one line', async () => {
    const result = await runCli(['revoke', '--user', '42', '--reason', 'x', '--usr', '43'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 64, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /^session-janitor: unknown option '--usr'/);
  });

  test('--issued-before in the future, refused by the database at enqueue: 64, nothing enqueued', async () => {
    const future = new Date(Date.now() + 86_400_000).toISOString();
    const result = await runCli(['revoke', '--issued-before', future, '--user', '42', '--reason', 'rotated'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 64, result.stderr);
    assert.match(result.stderr, /^session-janitor: invalid revocation request:\n {2}- .*issuedBefore .* is later than the database's now\(\)/m);
    assert.equal(await queued(), 0);
  });

  test('a mistyped command: 64, one line naming the known commands', async () => {
    const result = await runCli(['purge'], {}).finished;
    assert.equal(result.code, 64, result.stderr);
    assert.equal(
      result.stderr,
      'session-janitor: unknown command "purge" (did you mean purge-expired?); the commands: start, migrate, purge-expired, reap-idle, status, pause, resume, confirm, dev-url, revoke\n',
    );
  });
});
