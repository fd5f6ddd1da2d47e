/**
 * Security:
 *   - the password of DATABASE_URL never shows, on any path: a bad URL (configuration error), a
 *     wrong password, an unreachable or unknown host, for every command; and a failing query in a
 *     running worker (a session table that does not exist): its logs, the outputs pg-boss stores
 *     for the failed purge, reap and revocation (and their dead letters), and /metrics.
 *     (test/cli.test.ts covers `start` unreachable and `migrate` with a wrong password.)
 *   - no metric label holds a user id, a jti, an IP address or free text: a real worker after
 *     revocations of every selector with free text in reason and requestedBy; every label value of
 *     every session_janitor_ metric is in the closed sets of src/metrics.ts and src/queues.ts.
 *   - hostile configuration is refused at start (exit 78, before any connection), beyond what
 *     test/config.test.ts lists; a schedule the configuration accepts is one pg-boss accepts.
 *   - SQL text is built from validated identifiers only: every statement builder of src/db/sql,
 *     called with two configurations that differ in every value, returns texts that differ only in
 *     the identifiers, which appear quoted; no query of src/ interpolates into its text.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { createBoss } from '../src/boss.ts';
import { enqueueRevocation, waitForRevocation } from '../src/client.ts';
import { ConfigError, loadConfig, type Config, type QualifiedName } from '../src/config.ts';
import { freePort } from '../src/db/embedded.ts';
import { startWorker } from '../src/worker.ts';
import { DELETE_REASONS, ERROR_KINDS, HELD_BACK_REASONS, JOB_OUTCOMES, TASKS } from '../src/metrics.ts';
import { buildInfo } from '../src/build-info.ts';
import { ALL_QUEUES, QUEUES } from '../src/queues.ts';
import type { RevokeRequest } from '../src/revoke-request.ts';
import { createTestDatabase, insertSessions, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';
import { runCli, type Finished } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function assertNoSecret(text: string, secrets: readonly string[], where: string): void {
  for (const secret of secrets) {
    const at = text.indexOf(secret);
    assert.equal(at, -1, `${where} shows a secret: ...${text.slice(Math.max(0, at - 120), at + secret.length + 40)}...`);
  }
}

describe('the password of DATABASE_URL never shows', () => {
  let db: TestDatabase;
  const role = `sj_sec_${randomBytes(4).toString('hex')}`;
  // A password with characters that a URL must encode: both forms, and its core, are looked for.
  const core = randomBytes(12).toString('hex');
  const password = `S3cr3t:${core}@/#`;
  const wrongCore = randomBytes(12).toString('hex');
  const wrongPassword = `Wr0ng:${wrongCore}`;
  const secrets = [password, encodeURIComponent(password), core, wrongPassword, encodeURIComponent(wrongPassword), wrongCore];
  let secretUrl: string;
  let admin: pg.Client;

  const withCredentials = (base: string, user: string, pw: string, edit: (url: URL) => void = () => {}) => {
    const url = new URL(base);
    url.username = user;
    url.password = pw;
    edit(url);
    return url.toString();
  };

  before(async () => {
    db = await createTestDatabase();
    admin = new pg.Client({ connectionString: process.env.SJ_TEST_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN SUPERUSER PASSWORD ${pg.escapeLiteral(password)}`);
    secretUrl = withCredentials(db.url, role, password);
    assert.ok(!secretUrl.includes(password) && secretUrl.includes(core), 'the URL carries the password encoded');
  });
  after(async () => {
    await db?.drop();
    await admin?.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`);
    await admin?.end();
  });

  test('a bad DATABASE_URL: exit 78, one line naming the variable, no password', async () => {
    const encoded = encodeURIComponent(password);
    const urls = [
      `postgres://${role}:${encoded}@/auth`, // no host
      `mysql://${role}:${encoded}@127.0.0.1/auth`,
      `postgres://${role}:${encoded}@127.0.0.1:notaport/auth`, // unparsable
      `${role}:${encoded}@127.0.0.1/auth`, // no scheme
      `postgres://${role}:${password}@127.0.0.1/auth`, // the password not encoded
    ];
    const results = await Promise.all(urls.map((url) => runCli(['start'], { DATABASE_URL: url, JANITOR_METRICS_PORT: '0' }).finished));
    for (const [i, result] of results.entries()) {
      const output = result.stdout + result.stderr;
      // The last one parses as a URL (the password ends at the first '@'): it fails at connection time.
      if (i < urls.length - 1) {
        assert.equal(result.code, 78, output);
        assert.match(result.stderr, /^session-janitor: configuration error: DATABASE_URL=/);
      } else {
        assert.notEqual(result.code, 0, output);
      }
      assertNoSecret(output, secrets, `the output for ${urls[i]?.replace(encoded, '<pw>')}`);
    }
  });

  test('a wrong password, an unreachable port, an unknown host: every command fails without showing it', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const wrong = withCredentials(db.url, role, wrongPassword);
    const unreachable = withCredentials(db.url, role, password, (url) => (url.port = String(port)));
    const unknownHost = withCredentials(db.url, role, password, (url) => (url.hostname = 'no-such-host.invalid'));
    const commands: Array<[string, string[]]> = [
      ['start', ['start']],
      ['migrate', ['migrate']],
      ['status', ['status']],
      ['purge-expired', ['purge-expired']],
      ['reap-idle', ['reap-idle']],
      ['revoke', ['revoke', '--user', '42', '--reason', 'security-test', '--wait']],
    ];
    const runs: Array<{ what: string; finished: Promise<Finished> }> = [];
    for (const [name, args] of commands) {
      runs.push({ what: `${name} with a wrong password`, finished: runCli(args, { DATABASE_URL: wrong, JANITOR_METRICS_PORT: '0' }).finished });
      runs.push({ what: `${name} on an unreachable port`, finished: runCli(args, { DATABASE_URL: unreachable, JANITOR_METRICS_PORT: '0' }).finished });
    }
    runs.push({ what: 'start on an unknown host', finished: runCli(['start'], { DATABASE_URL: unknownHost, JANITOR_METRICS_PORT: '0' }).finished });
    for (const run of runs) {
      const result = await run.finished;
      const output = result.stdout + result.stderr;
      assert.equal(result.code, 1, `${run.what}: exit ${result.code}\n${output}`);
      assert.match(result.stderr, /^session-janitor: /m, run.what);
      assertNoSecret(output, secrets, run.what);
    }
  });

  test('a failing query in a running worker: logs, stored job outputs and /metrics hold no password', { timeout: 120_000 }, async () => {
    const worker = runCli(['start'], {
      DATABASE_URL: secretUrl,
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
      // Every query on the sessions fails: 42P01.
      JANITOR_SESSION_TABLE: 'auth.no_such_table',
      JANITOR_IDLE_TIMEOUT: '1h',
      JANITOR_RETRY_DELAY: '1s',
      JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
      LOG_LEVEL: 'debug',
    });
    const producer = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
    try {
      await worker.waitFor('session-janitor worker started', 30_000);
      const port = Number(/metrics at http:\/\/localhost:(\d+)\/metrics/.exec(worker.output())?.[1]);
      assert.ok(port > 0, worker.output());
      await producer.start();
      const ids = [
        await producer.send(QUEUES.purgeExpired, {}),
        await producer.send(QUEUES.reapIdle, {}),
        await enqueueRevocation(producer, { userId: 42, reason: 'security-test' }),
      ];
      assert.ok(ids.every((id) => id !== null));
      // The first failure of each stores its output (the revocation's retry comes at the revoke
      // queue's 30 s backstop poll, the purge's and the reap's 1 s later: not waited for here).
      const jobs = await until(
        'the three jobs to fail',
        async () => {
          const { rows } = await db.pool.query<{ name: string; state: string; output: string }>(
            `SELECT name, state::text, output::text AS output FROM pgboss.job WHERE id = ANY($1::uuid[])`,
            [ids],
          );
          return rows.length === 3 && rows.every((r) => ['retry', 'failed'].includes(r.state) && r.output !== null) && rows;
        },
        30_000,
        250,
      );
      for (const job of jobs) assert.match(job.output, /no_such_table/, `${job.name}: the failure is reported: ${job.output}`);
      const scrape = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      // The readiness check finds no sessions table (and the backlog gauge is not read meanwhile).
      assert.match(scrape, /session_janitor_database_up 0/);
      assert.match(scrape, new RegExp(`session_janitor_jobs_total\\{queue="${QUEUES.revoke}",outcome="failed"\\} [1-9]`));
      assertNoSecret(scrape, secrets, '/metrics');

      worker.child.kill('SIGTERM');
      const finished = await worker.finished;
      assert.equal(finished.code, 0, worker.output());
      const logs = finished.stdout + finished.stderr;
      assert.match(logs, /has no auth\.no_such_table/);
      assert.match(logs, /revocation failed/);
      // A failed scheduled run is logged, with its cause.
      for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle]) {
        assert.ok(
          logs.split('\n').some((line) => line.includes(`${queue} run failed`) && line.includes('no_such_table') && line.includes('"level":"error"')),
          `no error line for the failed ${queue} run`,
        );
      }
      assertNoSecret(logs, secrets, "the worker's logs");

      const { rows: stored } = await db.pool.query<{ text: string; n: number }>(
        `SELECT string_agg(coalesce(data::text, '') || ' ' || coalesce(output::text, ''), E'\\n') AS text, count(*)::int AS n FROM pgboss.job`,
      );
      assert.ok((stored[0]?.n ?? 0) >= 3);
      assertNoSecret(stored[0]?.text ?? '', secrets, 'pgboss.job');
    } finally {
      await producer.stop({ graceful: false }).catch(() => undefined);
      if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
    }
  });
});

describe('metric labels come from closed sets only', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  /** Each label name of the session_janitor_ metrics and every value it may take. */
  const CLOSED: Readonly<Record<string, readonly string[]>> = {
    reason: DELETE_REASONS,
    task: TASKS,
    queue: ALL_QUEUES,
    outcome: JOB_OUTCOMES,
    kind: ERROR_KINDS,
    state: ['queued', 'active', 'deferred', 'failed'],
    // The sessions table and the tables of JANITOR_PURGE_TABLES (none here): schema.table from the configuration.
    table: ['auth.refresh_session'],
  };
  const build = buildInfo();
  /** Where a family's label takes another closed set than the one of its name above. */
  const CLOSED_BY_FAMILY: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
    session_janitor_held_back_seconds_total: { reason: HELD_BACK_REASONS, task: ['purge-expired', 'reap-idle'] },
    // Facts of the build, one value each for the life of the process: never a request's.
    session_janitor_build_info: {
      version: [build.version],
      revision: [build.revision],
      pgboss_version: [build.pgbossVersion],
      node_version: [build.nodeVersion],
    },
    session_janitor_latency_probe_lock_waits_total: { task: ['purge-expired', 'reap-idle'] },
    session_janitor_stalled_runs_total: { task: ['purge-expired', 'reap-idle'] },
    session_janitor_paused_until_timestamp_seconds: { task: ['purge-expired', 'reap-idle', 'revoke'] },
    session_janitor_paused_since_timestamp_seconds: { task: ['purge-expired', 'reap-idle', 'revoke'] },
    session_janitor_pause_renewals: { task: ['purge-expired', 'reap-idle', 'revoke'] },
    session_janitor_blast_radius_stopped: { task: ['purge-expired', 'reap-idle'] },
    session_janitor_freshness_override_seconds_total: { task: ['purge-expired'] },
  };
  /** The label names of each family of the contract (histograms add `le` to their buckets). */
  const FAMILIES: Readonly<Record<string, readonly string[]>> = {
    session_janitor_sessions_deleted_total: ['reason'],
    session_janitor_batch_duration_seconds: ['task'],
    session_janitor_jobs_total: ['queue', 'outcome'],
    session_janitor_job_duration_seconds: ['queue'],
    session_janitor_last_success_timestamp_seconds: ['task'],
    session_janitor_expired_backlog_oldest_seconds: [],
    session_janitor_expired_backlog_sessions: [],
    session_janitor_queue_jobs: ['queue', 'state'],
    session_janitor_errors_total: ['kind'],
    session_janitor_database_up: [],
    session_janitor_revocation_latency_seconds: [],
    session_janitor_held_back_seconds_total: ['task', 'reason'],
    session_janitor_build_info: ['version', 'revision', 'pgboss_version', 'node_version'],
    session_janitor_latency_probe_lock_waits_total: ['task'],
    session_janitor_stalled_runs_total: ['task'],
    session_janitor_rows_deleted_total: ['table', 'reason'],
    session_janitor_table_backlog_rows: ['table'],
    session_janitor_table_backlog_oldest_seconds: ['table'],
    session_janitor_paused_until_timestamp_seconds: ['task'],
    session_janitor_paused_since_timestamp_seconds: ['task'],
    session_janitor_pause_renewals: ['task'],
    session_janitor_clock_skew_seconds: [],
    session_janitor_blast_radius_stopped: ['task'],
    session_janitor_clock_skew_hold: [],
    session_janitor_freshness_override_seconds_total: ['task'],
  };

  test('after revocations of every selector with free text, purges and reaps, every label value is in its closed set', { timeout: 60_000 }, async () => {
    const sessions = await insertSessions(db.pool, [
      ...Array.from({ length: 30 }, (_, i) => ({ expiresIn: 86_400, user: i % 6 })),
      ...Array.from({ length: 10 }, (_, i) => ({ expiresIn: -600, user: 6 + (i % 2) })),
      ...Array.from({ length: 10 }, (_, i) => ({ expiresIn: 86_400, idleFor: 7200, user: 8 + (i % 2) })),
    ]);
    await db.pool.query(`UPDATE auth.refresh_session SET ip_address = ('203.0.113.' || (id % 250))::inet, user_agent = 'Mozilla/5.0 (free text)'`);
    const users = [...new Set(sessions.map((s) => s.userId))];
    const [u0, u1, u2, u3, u4] = users;
    assert.ok(u0 && u1 && u2 && u3 && u4);
    const jtiOf = (user: number) => sessions.find((s) => s.userId === user)?.jti ?? '';
    const freeText = `user ${u0} asked from 198.51.100.23 at 2001:db8::1: «log me out everywhere» '; DROP TABLE x; --`;
    const requests: RevokeRequest[] = [
      { userId: u0, reason: freeText, requestedBy: 'alice@example.com via 192.0.2.44' },
      { userId: u1, exceptJti: jtiOf(u1), reason: `sign out the other devices of ${u1}` },
      { userIds: [u2, u3, 2_147_483_647], reason: 'admin: breach ticket SEC-1234' },
      { jtis: [jtiOf(u4), sessions[0]?.jti ?? ''], reason: `token ${jtiOf(u4)} compromised` },
      { userId: u4, issuedBefore: '2000-01-01T00:00:00Z', reason: 'old keys' },
      { issuedBefore: '2000-01-01T00:00:00Z', reason: 'key rotation 2000' },
    ];

    const worker = await startWorker(testConfig(db.url, { JANITOR_IDLE_TIMEOUT: '1h', JANITOR_GAUGE_REFRESH_CRON: '* * * * * *' }), silentLogger());
    const producer = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
    await producer.start();
    try {
      for (const request of requests) {
        const id = await enqueueRevocation(db.pool, request);
        assert.ok(id);
        await waitForRevocation(db.pool, id, { intervalMs: 50, timeoutMs: 20_000 });
      }
      // An invalid payload with free text and ids in it: outcome `rejected`.
      await db.pool.query('SELECT session_janitor.enqueue_revocation($1::jsonb)', [
        JSON.stringify({ userId: String(u0), reason: freeText, ip: '198.51.100.23' }),
      ]);
      for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle]) {
        const id = await producer.send(queue, {});
        await until(`${queue} to complete`, async () => (await producer.findJobs(queue, { id: id ?? '' }))[0]?.state === 'completed', 30_000);
      }
      const scrape = await until(
        'the metrics of every kind of job',
        async () => {
          const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
          return /outcome="rejected"\} 1/.test(text) && /task="reap-idle"/.test(text) && /session_janitor_queue_jobs\{/.test(text) && text;
        },
        20_000,
      );

      const seen = new Set<string>();
      for (const line of scrape.split('\n')) {
        if (!line.startsWith('session_janitor_')) continue;
        const match = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        assert.ok(match, `an unparsable sample: ${line}`);
        const [, name = '', labelText = ''] = match;
        const family = name.replace(/_(bucket|sum|count)$/, '');
        const labels = [...labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)].map((m) => [m[1] ?? '', m[2] ?? ''] as const);
        assert.equal(labels.map(([k, v]) => `${k}="${v}"`).join(','), labelText, `labels not fully parsed: ${line}`);
        const expectedNames = FAMILIES[family];
        assert.ok(expectedNames, `${family} is not a metric of the contract: add it, with its closed label sets, to this test (${line})`);
        assert.deepEqual(
          labels
            .map(([k]) => k)
            .filter((k) => k !== 'le')
            .sort(),
          [...expectedNames].sort(),
          `the label names of ${line}`,
        );
        for (const [key, value] of labels) {
          if (key === 'le') {
            assert.ok(value === '+Inf' || Number.isFinite(Number(value)), line);
            assert.ok(name.endsWith('_bucket'), line);
            continue;
          }
          assert.ok((CLOSED_BY_FAMILY[family]?.[key] ?? CLOSED[key])?.includes(value), `${key}="${value}" is not in its closed set: ${line}`);
          assert.doesNotMatch(
            value,
            /[0-9a-f]{8}-[0-9a-f]{4}-|^\d+$|\d+\.\d+\.\d+\.\d+|::|@|\s/i,
            `${key}="${value}" looks like an id, an address or free text`,
          );
          seen.add(`${key}=${value}`);
        }
      }
      for (const expected of [
        'reason=revoked',
        'reason=expired',
        'reason=idle',
        `queue=${QUEUES.revoke}`,
        'outcome=completed',
        'outcome=rejected',
        'task=revoke',
      ]) {
        assert.ok(seen.has(expected), `no sample with ${expected}: the scenario did not exercise it`);
      }
      // Nothing of the requests anywhere in the scrape, the default metrics included.
      for (const leak of [
        freeText.slice(0, 20),
        '198.51.100.23',
        '2001:db8::1',
        '203.0.113.',
        'alice@example.com',
        'SEC-1234',
        'Mozilla',
        ...sessions.map((s) => s.jti),
      ]) {
        assert.ok(!scrape.includes(leak), `the scrape holds ${leak}`);
      }
    } finally {
      await producer.stop({ graceful: false });
      await worker.stop();
    }
  });
});

describe('hostile configuration is refused at start', () => {
  const refusals: Array<[string, string]> = [
    ['JANITOR_SESSION_TABLE', 'auth.refresh_session WHERE 1=1; --'],
    ['JANITOR_SESSION_TABLE', "auth.refresh_session' OR '1'='1"],
    ['JANITOR_SESSION_TABLE', 'auth."refresh_session"'],
    ['JANITOR_SESSION_TABLE', '"auth"."refresh_session"'],
    ['JANITOR_SESSION_TABLE', 'Auth.Refresh_Session'],
    ['JANITOR_SESSION_TABLE', 'auth.r\u0435fresh_session'], // a Cyrillic e
    ['JANITOR_SESSION_TABLE', 'auth.refresh_session.extra'],
    ['JANITOR_SESSION_TABLE', `auth.${'x'.repeat(64)}`],
    ['JANITOR_SESSION_TABLE', 'auth.refresh_session\u0000'],
    ['JANITOR_SESSION_TABLE', ' auth.refresh_session'],
    ['PGBOSS_SCHEMA', 'pgboss"; DROP SCHEMA auth CASCADE; --'],
    ['PGBOSS_SCHEMA', 'PgBoss'],
    ['JANITOR_BATCH_MIN_SIZE', '-10'],
    ['JANITOR_BATCH_MAX_SIZE', '-1'],
    ['JANITOR_BATCH_TARGET_MS', '-25'],
    ['JANITOR_PURGE_CONCURRENCY', '-2'],
    ['JANITOR_PURGE_BATCH_MAX_SIZE', '-5000'],
    ['JANITOR_PURGE_DUTY_CYCLE', '-50'],
    ['JANITOR_PURGE_MAX_WAL_RATE', '-16MB'],
    ['JANITOR_PURGE_MAX_REPLICA_LAG', '-60s'],
    ['JANITOR_MAX_RUN_SECONDS', '-240'],
    ['JANITOR_REVOKE_CONCURRENCY', '-4'],
    ['JANITOR_BACKLOG_COUNT_CAP', '-1'],
    ['JANITOR_IDLE_TIMEOUT', '-30d'],
    ['JANITOR_STATEMENT_TIMEOUT', '-10s'],
    ['JANITOR_LOCK_TIMEOUT', '-200ms'],
    ['JANITOR_SHUTDOWN_TIMEOUT', '-25s'],
    ['JANITOR_HEARTBEAT', '-30s'],
    ['JANITOR_RETRY_DELAY', '-15s'],
    ['JANITOR_SUPERVISE_INTERVAL', '-60s'],
    ['JANITOR_BATCH_SIZE', '100; DROP TABLE auth.refresh_session'],
    ['JANITOR_BATCH_SIZE', '0x100'],
    ['JANITOR_REAP_CRON', '61 * * * *'],
    ['JANITOR_PURGE_CRON', '*/61 * * * *'],
    ['JANITOR_REAP_CRON', '0 */25 * * *'],
    ['JANITOR_PURGE_CRON', '5-1 * * * *'],
    ['JANITOR_PURGE_CRON', "* * * * *'; DROP TABLE x; --"],
    ['JANITOR_GAUGE_REFRESH_CRON', '61 * * * * *'],
    ['JANITOR_CRON_TZ', "UTC'; DROP TABLE x; --"],
  ];

  test('each value: a ConfigError naming the variable', () => {
    for (const [variable, value] of refusals) {
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: unknown) => error instanceof ConfigError && error.variable === variable && error.message.startsWith(`${variable}=`),
        `${variable}=${JSON.stringify(value)} was accepted`,
      );
    }
  });

  test('the command stops with exit 78 before it connects to anything', async () => {
    const port = await freePort();
    const picks = refusals
      .filter(([variable]) => ['JANITOR_SESSION_TABLE', 'JANITOR_REVOKE_CONCURRENCY', 'JANITOR_PURGE_CRON', 'JANITOR_REAP_CRON'].includes(variable))
      .slice(0, 6);
    const results = await Promise.all(
      picks.map(
        ([variable, value]) =>
          // A database that does not answer: exit 1 would mean the value got as far as a connection.
          runCli(['start'], { [variable]: value, DATABASE_URL: `postgres://janitor:pw@127.0.0.1:${port}/auth`, JANITOR_METRICS_PORT: '0' }).finished,
      ),
    );
    for (const [i, result] of results.entries()) {
      const [variable] = picks[i] ?? [''];
      assert.equal(result.code, 78, result.stdout + result.stderr);
      assert.equal(result.stdout, '');
      assert.ok(result.stderr.startsWith(`session-janitor: configuration error: ${variable}=`), result.stderr);
      assert.equal(result.stderr.trim().split('\n').length, 1);
    }
  });

  test('any schedule the configuration accepts is one pg-boss can schedule (no failure after start)', () => {
    const boss = new PgBoss('postgres://nobody@127.0.0.1:1/none');
    // Mostly plausible fields (values near their bounds, ranges either way, steps around the span),
    // some junk: the interesting cases are where node-cron and pg-boss's parser disagree.
    const BOUNDS: ReadonlyArray<readonly [number, number]> = [
      [0, 59],
      [0, 23],
      [1, 31],
      [1, 12],
      [0, 7],
    ];
    const field = (min: number, max: number) => {
      const value = fc.integer({ min: Math.max(0, min - 2), max: max + 2 }).map(String);
      const range = fc.tuple(value, value).map(([a, b]) => `${a}-${b}`);
      const atom = fc.oneof(
        { weight: 10, arbitrary: fc.constant('*') },
        { weight: 4, arbitrary: value },
        { weight: 2, arbitrary: range },
        {
          weight: 2,
          arbitrary: fc.tuple(fc.oneof(fc.constant('*'), range, value), fc.integer({ min: 0, max: max - min + 3 })).map(([a, step]) => `${a}/${step}`),
        },
        { weight: 1, arbitrary: fc.constantFrom('MON', 'mon-fri', 'JAN', 'L', '?', '5#2', '15W', 'LW', '*/x', '') },
      );
      return fc.array(atom, { minLength: 1, maxLength: 2 }).map((atoms) => atoms.join(','));
    };
    const expression = fc.tuple(...BOUNDS.map(([min, max]) => field(min, max))).map((fields) => fields.join(' '));
    let accepted = 0;
    fc.assert(
      fc.property(expression, (cron) => {
        let config: Config;
        try {
          config = loadConfig({ JANITOR_PURGE_CRON: cron });
        } catch (error) {
          assert.ok(error instanceof ConfigError, String(error));
          return;
        }
        accepted += 1;
        assert.doesNotThrow(
          () => boss.previewSchedule(config.purgeCron, { tz: config.cronTz }),
          `JANITOR_PURGE_CRON=${cron} passes the configuration, pg-boss refuses it`,
        );
      }),
      // A fixed seed (SJ_PROPERTY_SEED to vary it): about one generated expression in sixty is valid,
      // and the check below must not depend on luck.
      { numRuns: 3000, seed: Number(process.env.SJ_PROPERTY_SEED ?? 20261128) },
    );
    assert.ok(accepted >= 20, `only ${accepted} generated schedules were valid: the property was hardly exercised`);
  });
});

describe('SQL text is built from validated identifiers only', () => {
  /** Two configurations that differ in every value; their identifiers are distinct and distinctive. */
  const base = {
    JANITOR_EXPIRED_GRACE: '4321s',
    JANITOR_IDLE_TIMEOUT: '77h',
    JANITOR_BATCH_SIZE: '3217',
    JANITOR_BATCH_MIN_SIZE: '1234',
    JANITOR_BATCH_MAX_SIZE: '9876',
    JANITOR_BATCH_TARGET_MS: '37',
    JANITOR_PURGE_CRON: '17 3 * * *',
    JANITOR_REAP_CRON: '47 5 * * *',
    JANITOR_CRON_TZ: 'America/Argentina/Ushuaia',
    JANITOR_STATEMENT_TIMEOUT: '13s',
    JANITOR_LOCK_TIMEOUT: '333ms',
    JANITOR_MAX_RUN_SECONDS: '555',
    JANITOR_METRICS_HOST: 'zz-metrics-host.invalid',
    JANITOR_DATA_DIR: '/tmp/zz-data-dir',
  };
  const configA = loadConfig({
    ...base,
    DATABASE_URL: 'postgres://zzuser:zzSecretPw@zz-db-host.invalid:6543/zzdb',
    PGBOSS_SCHEMA: 'zz_boss_a',
    JANITOR_SESSION_TABLE: 'zz_schema_a.zz_table_a',
  });
  const configB = loadConfig({
    DATABASE_URL: 'postgres://other:otherPw@elsewhere.invalid:5432/other',
    PGBOSS_SCHEMA: 'zz_boss_b',
    JANITOR_SESSION_TABLE: 'zz_schema_b.zz_table_b',
    JANITOR_IDLE_TIMEOUT: '2h',
  });
  /** Values of configA that must never reach SQL text. */
  const VALUES = [
    '4321',
    '3217',
    '1234',
    '9876',
    '17 3',
    '47 5',
    'Ushuaia',
    '13000',
    '333',
    '555',
    'zz-metrics-host',
    'zz-data-dir',
    'zzuser',
    'zzSecretPw',
    'zz-db-host',
    '6543',
    'zzdb',
    '277200',
  ];
  const IDENTIFIERS_A = ['zz_boss_a', 'zz_schema_a', 'zz_table_a'];
  const toB = (text: string) => text.replaceAll('zz_boss_a', 'zz_boss_b').replaceAll('zz_schema_a', 'zz_schema_b').replaceAll('zz_table_a', 'zz_table_b');
  /**
   * Helpers that build identifiers or parameter values, not SQL statements; instantText and
   * pausedNow wrap an expression (a parameter) of the statement that calls them, whose text is
   * checked here.
   */
  const NOT_SQL = new Set([
    'quote',
    'qualified',
    'statementName',
    'positionKey',
    'parseInstant',
    'instantText',
    'parseMigration',
    'tieSlack',
    'pausedNow',
    'userApplicationName',
    'sessionTarget',
    'asTarget',
  ]);

  type Built = { readonly name: string; readonly text: (config: Config) => string };

  /** Every SQL text the modules of src/db/sql export, as a function of the configuration. */
  async function builders(): Promise<Built[]> {
    const built: Built[] = [];
    const dir = path.join(SRC, 'db/sql');
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.ts')).sort()) {
      const module = (await import(path.join(dir, file))) as Record<string, unknown>;
      for (const [name, value] of Object.entries(module)) {
        const id = `${file}:${name}`;
        if (typeof value === 'string') {
          if (/^[A-Z_]+$/.test(name)) built.push({ name: id, text: () => value });
        } else if (isStatement(value)) {
          built.push({ name: id, text: () => value.text });
        } else if (Array.isArray(value)) {
          for (const [i, item] of value.entries()) {
            if (typeof item === 'object' && item !== null && 'sql' in item && typeof item.sql === 'function') {
              const sql = item.sql as (config: Config) => string;
              built.push({ name: `${id}[${i}]`, text: (config) => sql(config) });
            }
          }
        } else if (typeof value === 'function' && !NOT_SQL.has(name)) {
          built.push({ name: id, text: callBuilder(id, value as (...args: unknown[]) => unknown) });
        }
      }
    }
    return built;
  }

  const isStatement = (value: unknown): value is { text: string } =>
    typeof value === 'object' && value !== null && 'text' in value && typeof value.text === 'string';

  /** Finds how the builder is called: (table[, flag]), (pgboss schema) or (config). */
  function callBuilder(id: string, fn: (...args: unknown[]) => unknown): (config: Config) => string {
    const ways: Array<(config: Config) => unknown> = [(config) => fn(config.sessionTable, true), (config) => fn(config.pgbossSchema), (config) => fn(config)];
    // The first way that builds a text naming an identifier; else the first that builds one at all.
    const working: Array<(config: Config) => string> = [];
    for (const way of ways) {
      try {
        const result = way(configA);
        if (typeof result !== 'string' && !isStatement(result)) continue;
        const call = (config: Config) => {
          const r = way(config);
          return typeof r === 'string' ? r : isStatement(r) ? r.text : '';
        };
        if (IDENTIFIERS_A.some((name) => call(configA).includes(name))) return call;
        working.push(call);
      } catch {
        // not this way
      }
    }
    if (working[0]) return working[0];
    assert.fail(`${id}: an exported function of src/db/sql that is called neither with a table, a schema nor a configuration: teach this test how to call it`);
  }

  test('every builder: no configuration value in the text, identifiers only quoted, only identifiers vary', async (t) => {
    const all = await builders();
    assert.ok(all.length >= 20, `${all.length} builders found`);
    t.diagnostic(`${all.length} texts: ${all.map((b) => b.name).join(', ')}`);
    for (const { name, text } of all) {
      const a = text(configA);
      const b = text(configB);
      for (const value of VALUES) assert.ok(!a.includes(value), `${name}: the text holds the configuration value ${JSON.stringify(value)}`);
      assert.equal(toB(a), b, `${name}: the texts of two configurations differ in more than the identifiers`);
      // Identifiers appear only as quoted identifiers ("x"), or as a string literal ('x') naming
      // the pg-boss schema inside the function that enqueues revocations.
      let rest = a;
      for (const identifier of IDENTIFIERS_A) rest = rest.replaceAll(`"${identifier}"`, '').replaceAll(`'${identifier}'`, '');
      for (const identifier of IDENTIFIERS_A) assert.ok(!rest.includes(identifier), `${name}: ${identifier} appears unquoted`);
    }
  });

  test('the quoting holds even for an identifier the configuration would refuse', async () => {
    const hostile: QualifiedName = { schema: 'a"b', name: `x"; DROP TABLE auth.refresh_session; --` };
    const config = { ...configA, sessionTable: hostile, pgbossSchema: `p"q'r` } as Config;
    for (const { name, text } of await builders()) {
      const sql = text(config);
      for (const raw of [hostile.schema, hostile.name, config.pgbossSchema]) {
        if (!sql.includes(pg.escapeIdentifier(raw)) && !sql.includes(pg.escapeLiteral(raw))) continue;
        assert.ok(!sql.replaceAll(pg.escapeIdentifier(raw), '').replaceAll(pg.escapeLiteral(raw), '').includes(raw), `${name}: ${raw} appears unescaped`);
      }
    }
  });

  test('no query in src/ interpolates into its SQL text', async () => {
    const files: string[] = [];
    const walk = async (dir: string) => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.name.endsWith('.ts')) files.push(full);
      }
    };
    await walk(SRC);
    const offenders: string[] = [];
    for (const file of files) {
      const source = await readFile(file, 'utf8');
      // .query(`...${...}...`) or .query<T>(`...${`: a value spliced into the text of a query.
      for (const match of source.matchAll(/\.query(?:<[^>(]*>)?\(\s*`[^`]*\$\{/g)) offenders.push(`${path.relative(SRC, file)}: ${match[0].slice(0, 80)}`);
    }
    assert.deepEqual(offenders, []);
  });
});
