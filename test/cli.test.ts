import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { freePort } from '../src/db/embedded.ts';
import { useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

describe('the command line refuses bad configuration with one clear line and exit 78', () => {
  const cases: Array<[string, string, string]> = [
    ['JANITOR_BATCH_SIZE', '-5', 'an integer from 10 to 100000'],
    ['JANITOR_PURGE_CRON', '61 * * * *', 'five-field cron expression'],
    ['JANITOR_EXPIRED_GRACE', 'soon', 'a duration from 0s to 365d'],
    ['JANITOR_IDLE_TIMEOUT', '10m', '`off` or a duration of at least 1h'],
    ['JANITOR_CRON_TZ', 'Nowhere/Special', 'an IANA time zone'],
    ['JANITOR_METRICS_PORT', '-1', 'a TCP port'],
    ['PGBOSS_SCHEMA', 'x"; DROP SCHEMA auth CASCADE; --', 'a lower-case SQL identifier'],
  ];
  for (const [variable, value, allowed] of cases) {
    for (const command of ['start', 'migrate']) {
      test(`${command}: ${variable}=${value}`, async () => {
        const result = await runCli([command], { [variable]: value, DATABASE_URL: 'postgres://janitor:pw@127.0.0.1:1/auth' }).finished;
        assert.equal(result.code, 78, result.stderr);
        assert.equal(result.stdout, '');
        assert.ok(result.stderr.startsWith(`session-janitor: configuration error: ${variable}=${JSON.stringify(value)} is invalid: `), result.stderr);
        assert.ok(result.stderr.includes(allowed), result.stderr);
        assert.equal(result.stderr.trim().split('\n').length, 1, 'one line');
      });
    }
  }
});

describe('database trouble is reported without the password, with a non-zero exit', () => {
  const db = useTestDatabase();

  test('an unreachable database', async () => {
    const port = await freePort();
    const result = await runCli(['start'], { DATABASE_URL: `postgres://janitor:Sup3r-Secret-pw@127.0.0.1:${port}/auth`, JANITOR_METRICS_PORT: '0' }).finished;
    assert.equal(result.code, 1);
    const output = result.stdout + result.stderr;
    assert.doesNotMatch(output, /Sup3r-Secret-pw/);
    assert.match(result.stderr, /^session-janitor: .*does not answer/m);
    assert.match(output, /ECONNREFUSED/);
    assert.match(output, new RegExp(`127\\.0\\.0\\.1:${port}/auth as janitor`), 'the log names the database it tried');
    assert.doesNotMatch(result.stdout, /"level":"(warn|error)"/, 'the one line on stderr is the last word: no warning with a stack after it');
  });

  test('a wrong password', async () => {
    const url = new URL(db.url);
    url.password = 'Wr0ng-Passw0rd-xyz';
    const result = await runCli(['migrate'], { DATABASE_URL: url.toString(), JANITOR_METRICS_PORT: '0' }).finished;
    assert.equal(result.code, 1);
    const output = result.stdout + result.stderr;
    assert.doesNotMatch(output, /Wr0ng-Passw0rd-xyz/);
    assert.match(result.stderr, /^session-janitor: authentication failed for user \w+ at 127\.0\.0\.1:\d+/m);
  });

  test('migrate is idempotent and exits 0', async () => {
    for (let run = 0; run < 2; run++) {
      const result = await runCli(['migrate'], { DATABASE_URL: db.url, JANITOR_METRICS_PORT: '0' }).finished;
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stderr, /queues and schedules are installed/, 'a one-shot command logs to stderr');
    }
    const queues = await db.pool.query<{ name: string }>('SELECT name FROM pgboss.queue ORDER BY name');
    assert.deepEqual(
      queues.rows.map((r) => r.name),
      ['refresh-session.dead-letter', 'refresh-session.purge-expired', 'refresh-session.reap-idle', 'refresh-session.revoke'],
    );
  });

  test('the foreground purge prints a summary', async () => {
    await db.pool.query(`INSERT INTO auth."user" (email) VALUES ('cli@example.invalid')`);
    await db.pool.query(
      `INSERT INTO auth.refresh_session (user_id, expires_at) SELECT (SELECT max(id) FROM auth."user"), now() - g * interval '1 minute' FROM generate_series(1, 250) g`,
    );
    const dry = await runCli(['purge-expired', '--dry-run'], { DATABASE_URL: db.url }).finished;
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /dry run: 250 sessions would be purged/);
    const real = await runCli(['purge-expired'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, /^purged 250 sessions in \d+ batches, .* stopped by: drained$/m);
    const left = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session WHERE expires_at < now()');
    assert.equal(left.rows[0]?.n, 0);
    // The real run is in the job history, the dry run is not.
    const recorded = await db.pool.query<{ output: { deleted: number } }>(`SELECT output FROM pgboss.job WHERE data @> '{"manual": true}'`);
    assert.deepEqual(
      recorded.rows.map((r) => r.output.deleted),
      [250],
    );
  });

  test('without pg-boss installed, the foreground purge refuses before deleting anything: one line, run migrate', async () => {
    await db.pool.query('DROP SCHEMA pgboss CASCADE');
    await db.pool.query(
      `INSERT INTO auth.refresh_session (user_id, expires_at) SELECT (SELECT max(id) FROM auth."user"), now() - g * interval '1 minute' FROM generate_series(1, 7) g`,
    );
    const result = await runCli(['purge-expired'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^session-janitor: pg-boss is not installed in schema pgboss of sj_test_\w+: run `npx session-janitor migrate`$/m);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    const left = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session WHERE expires_at < now()');
    assert.equal(left.rows[0]?.n, 7);
  });
});
