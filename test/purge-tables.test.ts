/**
 * JANITOR_PURGE_TABLES: the auth service's other expiring tables, purged by the sessions table's
 * engine.
 *
 * - every malformed entry is refused in one line naming it (exit 78 from the command line);
 * - every mistake the catalog shows (no table, no column, not timestamptz, no index led by it, no
 *   single-column primary key, no SELECT or DELETE) is one line naming the entry, and a command
 *   asked for a table that is not configured is a usage error naming the configured ones;
 * - three worker replicas, two extra tables of different shapes (a uuid key from
 *   gen_random_uuid(), a bigint identity), expired, live and boundary rows in each, and an auth
 *   workload refreshing some of them: exactly the right rows are left in all three tables, one run
 *   per table and period, the per-table counters are exact in a real Prometheus, and the
 *   dashboard's table row, evaluated there, shows them; a table dropped meanwhile fails its own
 *   run only.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ConfigError, loadConfig } from '../src/config.ts';
import { createBoss } from '../src/boss.ts';
import { checkPurgeTable } from '../src/db/purge-tables.ts';
import { purgeTableTask, QUEUES } from '../src/queues.ts';
import { purgeTable } from '../src/tasks/purge-expired.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { silentLogger, taskContext, testConfig, useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { startPrometheus, type Prometheus } from './helpers/prometheus.ts';
import { until } from './helpers/wait.ts';

const ENV = 'JANITOR_PURGE_TABLES';

describe('JANITOR_PURGE_TABLES: malformed values', () => {
  test('each malformed entry is refused in one line that names it', () => {
    const cases: Array<[string, string]> = [
      ['auth.one_time_token', 'auth.one_time_token'],
      ['auth:expires_at', 'auth:expires_at'],
      ['auth.one_time_token:Expires', 'auth.one_time_token:Expires'],
      ['auth.one_time_token:expires_at:1y', 'auth.one_time_token:expires_at:1y'],
      ['auth.one_time_token:expires_at:1h:x', 'auth.one_time_token:expires_at:1h:x'],
      ['auth.flow_state:expires_at,auth.flow_state:expires_at:1h', 'auth.flow_state:expires_at:1h'],
      ['auth.refresh_session:expires_at', 'auth.refresh_session:expires_at'],
      ['auth.a:expires_at,,auth.b:expires_at', 'auth.a:expires_at,,auth.b:expires_at'],
      ['"auth"."x":expires_at', '"auth"."x":expires_at'],
    ];
    for (const [value, entry] of cases) {
      assert.throws(
        () => loadConfig({ [ENV]: value }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.variable, ENV);
          assert.ok(error.message.includes(JSON.stringify(entry)), `${value}: ${error.message}`);
          assert.ok(!error.message.includes('\n'), error.message);
          return true;
        },
      );
    }
  });

  test('well-formed: tables in order, the grace optional (0 by default), unset is the sessions table alone', () => {
    assert.deepEqual(loadConfig({}).purgeTables, []);
    assert.deepEqual(loadConfig({ [ENV]: '' }).purgeTables, []);
    const tables = loadConfig({ [ENV]: 'auth.one_time_token:expires_at, auth.flow_state:valid_until:1h' }).purgeTables;
    assert.deepEqual(
      tables.map((t) => [t.label, t.expiryColumn, t.graceSeconds]),
      [
        ['auth.one_time_token', 'expires_at', 0],
        ['auth.flow_state', 'valid_until', 3600],
      ],
    );
  });

  test('the command line: one line and exit 78', async () => {
    const finished = await runCli(['purge-expired'], { [ENV]: 'auth.one_time_token:expires_at:soon' }).finished;
    assert.equal(finished.code, 78, finished.stderr);
    const lines = finished.stderr.trim().split('\n');
    assert.equal(lines.length, 1, finished.stderr);
    assert.match(lines[0] ?? '', /JANITOR_PURGE_TABLES="auth\.one_time_token:expires_at:soon" is invalid: the grace "soon"/);
  });
});

/** The two extra tables of the acceptance test: a uuid key and a bigint identity key, expiry columns of other names. */
const EXTRA_DDL = `
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE auth.one_time_token (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id bigint NOT NULL,
  token_hash text NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX one_time_token_expires_at_idx ON auth.one_time_token (expires_at);
CREATE TABLE auth.flow_state (
  flow_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL,
  valid_until timestamptz NOT NULL
);
CREATE INDEX flow_state_valid_until_kind_idx ON auth.flow_state (valid_until, kind);`;

describe('JANITOR_PURGE_TABLES: what the catalog refuses', () => {
  const db = useTestDatabase();

  test('each mistake is one line naming the entry; an unknown --table is a usage error naming the configured ones', { timeout: 60_000 }, async () => {
    await db.pool.query(`
      CREATE TABLE auth.t_ok (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL);
      CREATE INDEX ON auth.t_ok (expires_at);
      CREATE TABLE auth.t_plain (id bigint PRIMARY KEY, expires_at timestamp NOT NULL);
      CREATE INDEX ON auth.t_plain (expires_at);
      CREATE TABLE auth.t_unindexed (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL);
      CREATE TABLE auth.t_second (id bigint PRIMARY KEY, kind text, expires_at timestamptz NOT NULL);
      CREATE INDEX ON auth.t_second (kind, expires_at);
      CREATE TABLE auth.t_partial (id bigint PRIMARY KEY, expires_at timestamptz NOT NULL);
      CREATE INDEX ON auth.t_partial (expires_at) WHERE id > 0;
      CREATE TABLE auth.t_nokey (id bigint, expires_at timestamptz NOT NULL);
      CREATE INDEX ON auth.t_nokey (expires_at);
      CREATE TABLE auth.t_twokeys (a bigint, b bigint, expires_at timestamptz NOT NULL, PRIMARY KEY (a, b));
      CREATE INDEX ON auth.t_twokeys (expires_at);
      CREATE VIEW auth.t_view AS SELECT * FROM auth.t_ok;
      CREATE TABLE auth.t_precise (id text PRIMARY KEY, expires_at timestamptz(3) NOT NULL);
      CREATE INDEX ON auth.t_precise (expires_at);`);
    // A timestamptz of any precision, a text key: usable.
    const [precise] = testConfig(db.url, { [ENV]: 'auth.t_precise:expires_at' }).purgeTables;
    assert.ok(precise);
    assert.deepEqual((await checkPurgeTable(db.pool, precise)).problems, []);
    const cases: Array<[string, RegExp]> = [
      ['auth.t_missing:expires_at', /table auth\.t_missing does not exist/],
      ['auth.t_ok:gone_at', /auth\.t_ok has no column gone_at/],
      ['auth.t_plain:expires_at', /column auth\.t_plain\.expires_at is timestamp without time zone, not timestamptz/],
      ['auth.t_unindexed:expires_at', /no btree index of auth\.t_unindexed has expires_at as its first column/],
      ['auth.t_second:expires_at', /no btree index of auth\.t_second has expires_at as its first column/],
      ['auth.t_partial:expires_at', /no btree index of auth\.t_partial has expires_at as its first column/],
      ['auth.t_nokey:expires_at', /auth\.t_nokey has no primary key/],
      ['auth.t_twokeys:expires_at', /auth\.t_twokeys's primary key has 2 columns \(a, b\): the purge needs a single-column one/],
      ['auth.t_view:expires_at', /auth\.t_view is not a table/],
    ];
    for (const [entry, expected] of cases) {
      const [table] = testConfig(db.url, { [ENV]: entry }).purgeTables;
      assert.ok(table);
      const check = await checkPurgeTable(db.pool, table);
      assert.equal(check.target, null, entry);
      assert.equal(check.problems.length, 1, `${entry}: ${check.problems.join(' | ')}`);
      assert.ok(check.problems[0]?.startsWith(`JANITOR_PURGE_TABLES entry "${entry}": `), check.problems[0]);
      assert.match(check.problems[0] ?? '', expected);
    }

    // Privileges, as the role that lacks them sees it (has_table_privilege asks current_user).
    const role = `sj_no_grants_${Date.now()}`;
    await db.pool.query(`CREATE ROLE ${role}; GRANT USAGE ON SCHEMA auth TO ${role}; GRANT SELECT ON auth.t_ok TO ${role}`);
    const client = await db.pool.connect();
    try {
      await client.query(`SET ROLE ${role}`);
      const [table] = testConfig(db.url, { [ENV]: 'auth.t_ok:expires_at' }).purgeTables;
      assert.ok(table);
      const check = await checkPurgeTable(client, table);
      assert.deepEqual(check.problems, [
        `JANITOR_PURGE_TABLES entry "auth.t_ok:expires_at": ${role} lacks DELETE on auth.t_ok: GRANT SELECT, DELETE ON auth.t_ok TO session_janitor_worker (docs/deployment.md)`,
      ]);
      await client.query('RESET ROLE');
      const usable = await checkPurgeTable(client, table);
      assert.deepEqual(usable, { target: { table: table.table, expiry: 'expires_at', key: 'id', keyArray: null }, problems: [] });
    } finally {
      await client.query('RESET ROLE').catch(() => undefined);
      client.release();
      await db.pool.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
    }

    // The command line: a table that is not configured, and one configured table that cannot be used beside one that can.
    const env = { DATABASE_URL: db.url, [ENV]: 'auth.t_ok:expires_at,auth.t_plain:expires_at', LOG_LEVEL: 'warn' };
    const unknown = await runCli(['purge-expired', '--table', 'auth.nope'], env).finished;
    assert.equal(unknown.code, 64, unknown.stderr);
    assert.match(unknown.stderr, /--table auth\.nope is not a configured table; the configured ones: auth\.refresh_session, auth\.t_ok, auth\.t_plain/);

    await db.pool.query(`INSERT INTO auth.t_ok VALUES (1, now() - interval '1 day'), (2, now() + interval '1 day')`);
    const both = await runCli(['purge-expired'], env).finished;
    assert.equal(both.code, 1, both.stdout + both.stderr);
    assert.match(both.stdout, /^purged 0 sessions in /m);
    assert.match(both.stdout, /^purged 1 rows of auth\.t_ok in /m);
    assert.match(
      both.stderr,
      /auth\.t_plain: JANITOR_PURGE_TABLES entry "auth\.t_plain:expires_at": column auth\.t_plain\.expires_at is timestamp without time zone, not timestamptz/,
    );
    const { rows } = await db.pool.query<{ id: string }>('SELECT id::text FROM auth.t_ok');
    assert.deepEqual(
      rows.map((r) => r.id),
      ['2'],
    );
  });
});

describe('JANITOR_PURGE_TABLES: a held row of a uuid-keyed table', () => {
  const db = useTestDatabase();

  test('a row held in a savepoint never stalls the run; the next run purges it; --dry-run and status count per table', { timeout: 60_000 }, async () => {
    await db.pool.query(EXTRA_DDL);
    await db.pool.query(`INSERT INTO auth.one_time_token (user_id, token_hash, expires_at)
      SELECT g, md5(g::text), CASE WHEN g <= 500 THEN now() - interval '1 hour' ELSE now() + interval '1 day' END FROM generate_series(1, 600) g`);
    const { rows: held } = await db.pool.query<{ id: string }>('SELECT id::text FROM auth.one_time_token WHERE user_id = 250');
    const heldId = held[0]?.id;
    assert.ok(heldId);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SAVEPOINT s');
    await holder.query('SELECT 1 FROM auth.one_time_token WHERE id = $1 FOR UPDATE', [heldId]);
    const config = testConfig(db.url, {
      [ENV]: 'auth.one_time_token:expires_at',
      JANITOR_BATCH_SIZE: '100',
      JANITOR_BATCH_MIN_SIZE: '100',
      JANITOR_LOCK_TIMEOUT: '50ms',
    });
    const [table] = config.purgeTables;
    assert.ok(table);
    const ctx = taskContext(config, 4);
    try {
      assert.equal((await purgeTable(ctx, table, { dryRun: true })).wouldDelete, 500);
      const first = await purgeTable(ctx, table);
      assert.equal(first.stoppedBy, 'drained');
      assert.equal(first.deleted, 499, 'every expired row but the held one');
      await holder.query('ROLLBACK');
      const second = await purgeTable(ctx, table);
      assert.equal(second.deleted, 1);
      const { rows } = await db.pool.query<{ n: number; expired: number }>(
        'SELECT count(*)::int AS n, count(*) FILTER (WHERE expires_at < now())::int AS expired FROM auth.one_time_token',
      );
      assert.deepEqual(rows[0], { n: 100, expired: 0 });
      const counted = (await ctx.metrics.rowsDeleted.get()).values.find((v) => v.labels.table === 'auth.one_time_token' && v.labels.reason === 'expired');
      assert.equal(counted?.value, 500);
    } finally {
      await holder.end().catch(() => undefined);
      await ctx.pool.end();
    }

    await db.pool.query(
      `INSERT INTO auth.one_time_token (user_id, token_hash, expires_at) VALUES (1, 'a', now() - interval '2 hours'), (2, 'b', now() - interval '3 hours')`,
    );
    const env = { DATABASE_URL: db.url, [ENV]: 'auth.one_time_token:expires_at,auth.flow_state:expires_at', LOG_LEVEL: 'warn' };
    const status = await runCli(['status', '--json'], env).finished;
    assert.equal(status.code, 0, status.stderr);
    const tables = (
      JSON.parse(status.stdout) as { tables: Array<{ table: string; backlog: { rows: number; oldestWaitingSeconds: number } | null; problems: string[] }> }
    ).tables;
    assert.deepEqual(
      tables.map((t) => [t.table, t.backlog?.rows ?? null, t.problems.length]),
      [
        ['auth.one_time_token', 2, 0],
        ['auth.flow_state', null, 1],
      ],
    );
    assert.ok((tables[0]?.backlog?.oldestWaitingSeconds ?? 0) >= 3 * 3600 - 60);
    assert.match(tables[1]?.problems[0] ?? '', /auth\.flow_state has no column expires_at/);
  });
});

interface JobRow {
  readonly name: string;
  readonly state: string;
  readonly minute: string;
  readonly output: { deleted?: number; stoppedBy?: string } | null;
  readonly output_text: string | null;
}

describe('three replicas purge the sessions table and two extra tables', () => {
  const workers: Worker[] = [];
  let prometheus: Prometheus | undefined;
  // Registered before the database's own hooks: the workers stop before it is dropped.
  after(async () => {
    await prometheus?.stop();
    await Promise.allSettled(workers.map((w) => w.stop()));
  });
  const db = useTestDatabase();

  test('exact rows left in each, one run per table and period, exact counters per table in Prometheus, the dashboard row', { timeout: 120_000 }, async () => {
    await db.pool.query(EXTRA_DDL);
    await db.pool.query(`INSERT INTO auth."user" (email) SELECT 'pt-' || g || '@example.invalid' FROM generate_series(1, 50) g`);
    // Sessions: 1500 expired, 300 live. The one-time tokens (no grace): 1200 expired, 600 of them on one
    // instant (a tie walked by key), 300 live, and 100 each side of the boundary an hour away from it.
    // The flows (grace 1h): 900 expired past the grace, 100 within it (kept), 200 live.
    await db.pool.query(`
      WITH u AS (SELECT array_agg(id) AS ids FROM auth."user")
      INSERT INTO auth.refresh_session (user_id, expires_at)
      SELECT u.ids[1 + g % 50], CASE WHEN g <= 1500 THEN now() - (1 + g % 500) * interval '1 minute' ELSE now() + interval '30 days' END
        FROM u, generate_series(1, 1800) g;
      INSERT INTO auth.one_time_token (user_id, token_hash, expires_at)
      SELECT g, md5(g::text), CASE WHEN g <= 600 THEN now() - interval '3 hours'
                                   WHEN g <= 1200 THEN now() - (1 + g % 300) * interval '1 minute'
                                   WHEN g <= 1300 THEN now() - interval '1 hour'
                                   WHEN g <= 1400 THEN now() + interval '1 hour'
                                   ELSE now() + interval '1 day' END
        FROM generate_series(1, 1700) g;
      INSERT INTO auth.flow_state (kind, valid_until)
      SELECT CASE WHEN g % 2 = 0 THEN 'login' ELSE 'registration' END,
             CASE WHEN g <= 900 THEN now() - interval '1 hour' - (1 + g % 120) * interval '1 minute'
                  WHEN g <= 1000 THEN now() - interval '30 minutes'
                  ELSE now() + interval '10 minutes' END
        FROM generate_series(1, 1200) g;`);
    // The auth service refreshed some expired rows before the first tick: they are live again.
    await db.pool.query(
      `UPDATE auth.refresh_session SET expires_at = now() + interval '1 day' WHERE id IN (SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY id LIMIT 50)`,
    );
    await db.pool.query(`UPDATE auth.one_time_token SET expires_at = now() + interval '1 day' WHERE user_id % 40 = 0 AND expires_at < now()`);
    await db.pool.query(`UPDATE auth.flow_state SET valid_until = now() + interval '1 day' WHERE flow_id % 30 = 0 AND valid_until < now() - interval '1 hour'`);
    const counts = async () => {
      const { rows } = await db.pool.query<{ sessions: number; tokens: number; flows: number }>(
        `SELECT (SELECT count(*)::int FROM auth.refresh_session WHERE expires_at >= now()) AS sessions,
                (SELECT count(*)::int FROM auth.one_time_token WHERE expires_at >= now()) AS tokens,
                (SELECT count(*)::int FROM auth.flow_state WHERE valid_until >= now() - interval '1 hour') AS flows`,
      );
      return rows[0];
    };
    const kept = await counts();
    assert.ok(kept);
    const { rows: totals } = await db.pool.query<{ sessions: number; tokens: number; flows: number }>(
      `SELECT (SELECT count(*)::int FROM auth.refresh_session) AS sessions, (SELECT count(*)::int FROM auth.one_time_token) AS tokens,
              (SELECT count(*)::int FROM auth.flow_state) AS flows`,
    );
    const before = totals[0];
    assert.ok(before);
    // 1500 - 50 refreshed; 1300 at or past expiry minus the refreshed (user_id % 40 = 0 among 1..1300: 32); 900 minus flow_id % 30 = 0 (30).
    assert.deepEqual(
      { sessions: before.sessions - kept.sessions, tokens: before.tokens - kept.tokens, flows: before.flows - kept.flows },
      { sessions: 1450, tokens: 1268, flows: 870 },
    );

    const env = {
      JANITOR_PURGE_TABLES: 'auth.one_time_token:expires_at,auth.flow_state:valid_until:1h',
      // Never, at first: the schedule comes once Prometheus has scraped every replica (below).
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_SCHEDULE_CHECK_INTERVAL: '1s',
      JANITOR_IDLE_TIMEOUT: 'off',
      JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      JANITOR_BATCH_SIZE: '100',
      JANITOR_BATCH_MIN_SIZE: '100',
      JANITOR_BATCH_MAX_SIZE: '100',
      JANITOR_PURGE_BATCH_MAX_SIZE: '100',
    };
    for (let i = 0; i < 3; i += 1) workers.push(await startWorker(testConfig(db.url, env), silentLogger()));
    prometheus = await startPrometheus(...workers.map((w) => `127.0.0.1:${w.metricsPort}`));
    const { query } = prometheus;
    // Every series at 0 in Prometheus before the first delete, as with a Prometheus that was there
    // before the rollout: increase() then counts the first run's rows too. 3 replicas x (3 + 1 + 1).
    await until('a first scrape of every replica', async () => Number((await query('count(session_janitor_rows_deleted_total == 0)'))[0]?.value[1]) === 15);
    const queues = [QUEUES.purgeExpired, ...testConfig(db.url, env).purgeTables.map((t) => purgeTableTask(t).queue)];
    // Every minute from now: what JANITOR_PURGE_CRON='* * * * *' registers (boss.ts ensureSchedules).
    // The replicas' pg-boss evaluate it every second, each.
    const scheduler = createBoss(testConfig(db.url, env), db.url, { role: 'tool', migrate: false }, silentLogger());
    await scheduler.start();
    try {
      for (const queue of queues) await scheduler.schedule(queue, '* * * * *', {}, { tz: 'UTC', missed: 'once' });
    } finally {
      await scheduler.stop({ graceful: false });
    }

    // The auth workload: live rows of each table refreshed in short transactions while the purges run.
    let working = true;
    const workload = (async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        for (let i = 0; working; i += 1) {
          await client.query('BEGIN');
          await client.query(
            `UPDATE auth.refresh_session SET expires_at = now() + interval '30 days' WHERE id = (SELECT max(id) - $1::int FROM auth.refresh_session)`,
            [i % 200],
          );
          await client.query(`UPDATE auth.one_time_token SET expires_at = now() + interval '1 day' WHERE user_id = 1400 + $1::int`, [1 + (i % 300)]);
          await client.query(`UPDATE auth.flow_state SET valid_until = now() + interval '10 minutes' WHERE flow_id = 1000 + $1::int`, [1 + (i % 200)]);
          await sleep(20);
          await client.query('COMMIT');
        }
      } finally {
        await client.end();
      }
    })();

    const jobs = async () =>
      (
        await db.pool.query<JobRow>(
          `SELECT name, state::text, to_char(date_trunc('minute', created_on), 'HH24:MI') AS minute, output, output::text AS output_text
             FROM pgboss.job WHERE name = ANY($1::text[]) ORDER BY created_on`,
          [queues],
        )
      ).rows;
    try {
      await until(
        'the first scheduled run of each table to complete',
        async () => {
          const all = await jobs();
          const failed = all.find((j) => j.state === 'failed');
          if (failed) assert.fail(`${failed.name}: ${failed.output_text}`);
          return queues.every((q) => all.some((j) => j.name === q && j.state === 'completed')) && all;
        },
        60_000,
      );
    } finally {
      working = false;
      await workload;
    }
    await until('the scheduled queues to be idle', async () => (await jobs()).every((j) => j.state === 'completed'), 30_000);

    // Exactly the live, boundary-kept and refreshed rows are left, in every table.
    const left = await counts();
    const { rows: now } = await db.pool.query<{ sessions: number; tokens: number; flows: number }>(
      `SELECT (SELECT count(*)::int FROM auth.refresh_session) AS sessions, (SELECT count(*)::int FROM auth.one_time_token) AS tokens,
              (SELECT count(*)::int FROM auth.flow_state) AS flows`,
    );
    assert.deepEqual(now[0], kept, 'every row left is live (or within its grace), and every such row is left');
    assert.deepEqual(left, kept);

    // One run per table and minute across the three replicas, and the runs add up to the rows gone.
    const all = await jobs();
    const deleted: Record<string, number> = {};
    for (const queue of queues) {
      const runs = all.filter((j) => j.name === queue);
      const minutes = runs.map((j) => j.minute);
      assert.deepEqual(minutes, [...new Set(minutes)], `${queue}: more than one run in a minute: ${minutes.join(', ')}`);
      for (const run of runs) assert.equal(run.output?.stoppedBy, 'drained', run.output_text ?? '');
      deleted[queue] = runs.reduce((n, j) => n + (j.output?.deleted ?? 0), 0);
    }
    assert.deepEqual(deleted, {
      [QUEUES.purgeExpired]: 1450,
      'refresh-session.purge-table.auth.one_time_token': 1268,
      'refresh-session.purge-table.auth.flow_state': 870,
    });

    // Prometheus: the counters per table, summed over the replicas, are exact; the sessions table's own series too.
    const expected = { 'auth.refresh_session': 1450, 'auth.one_time_token': 1268, 'auth.flow_state': 870 };
    const byTable = await until('a scrape of every replica after the runs', async () => {
      const samples = await query('sum by (table) (session_janitor_rows_deleted_total{reason="expired"})');
      const got = Object.fromEntries(samples.map((s) => [s.metric.table ?? '', Number(s.value[1])]));
      return isEqual(got, expected) && got;
    });
    assert.deepEqual(byTable, expected);
    const sessions = await query('sum(session_janitor_sessions_deleted_total{reason="expired"})');
    assert.equal(Number(sessions[0]?.value[1]), 1450, 'the sessions counter holds the sessions table only');

    // The dashboard's table row, its variables as Grafana fills them for one table. increase()
    // extrapolates a series to the end of its window from its last sample, and the replicas are
    // scraped at different instants: so the row is evaluated replica by replica (its $pod variable
    // set to one; here the instance, this Prometheus has no pod label), each at its own last scrape
    // (in 1 of 3 full runs the sum over all at the newest scrape read 1502.1 for 1450).
    const row = tableRowQueries();
    const lastScrapes = await query('max by (instance) (timestamp(session_janitor_rows_deleted_total))');
    assert.equal(lastScrapes.length, 3, 'a scrape of each replica');
    for (const [table, rows] of Object.entries(expected)) {
      const fill = (expr: string, instance = '.*') =>
        expr
          .replaceAll('$__rate_interval', '1m')
          .replaceAll('$__range', '1h')
          .replaceAll('$cluster', '.*')
          .replaceAll('$namespace', '')
          .replaceAll('pod=~"$pod"', `instance=~"${instance}"`)
          .replaceAll('$table', table);
      const increase = row.find((e) => e.includes('increase(session_janitor_rows_deleted_total'));
      assert.ok(increase, 'the table row has a rows-deleted-in-the-range panel');
      let total = 0;
      for (const scrape of lastScrapes) {
        const samples = await query(fill(increase, scrape.metric.instance ?? ''), Number(scrape.value[1]));
        total += samples.reduce((n, s) => n + Number(s.value[1]), 0);
      }
      assert.equal(total, rows, `${table}: ${fill(increase, '<each replica>')}`);
      const backlog = row.find((e) => e.includes('session_janitor_table_backlog_rows'));
      assert.ok(backlog, 'the table row has a backlog panel');
      await until(`${table}'s backlog to read 0 in Prometheus`, async () => Number((await query(fill(backlog)))[0]?.value[1]) === 0);
    }

    // A table dropped: its own runs fail with the reason, readiness names it, the other tables' runs go on.
    await db.pool.query('DROP TABLE auth.flow_state');
    const readyText = await until('readiness to name the dropped table', async () => {
      const response = await fetch(`http://127.0.0.1:${workers[0]?.metricsPort}/readyz`);
      const text = await response.text();
      return response.status === 503 && text.includes('auth.flow_state') && text;
    });
    assert.match(readyText, /JANITOR_PURGE_TABLES entry "auth\.flow_state:valid_until:1h": table auth\.flow_state does not exist/);
    await db.pool.query(`INSERT INTO auth.one_time_token (user_id, token_hash, expires_at) VALUES (0, 'x', now() - interval '1 minute')`);
    const producer = createBoss(testConfig(db.url, env), db.url, { role: 'tool', migrate: false }, silentLogger());
    await producer.start();
    try {
      const [tokens, flows] = queues.slice(1);
      assert.ok(tokens && flows);
      // The exclusive queue refuses a job while the minute's own tick is queued or running: that one is as good.
      const runOf = async (queue: string) =>
        (await producer.send(queue, {})) ??
        (await db.pool.query<{ id: string }>(`SELECT id FROM pgboss.job WHERE name = $1 ORDER BY created_on DESC LIMIT 1`, [queue])).rows[0]?.id;
      const tokenRun = await runOf(tokens);
      const flowRun = await runOf(flows);
      const states = await until('the token run to complete and the flow run to fail', async () => {
        const { rows } = await db.pool.query<{ name: string; state: string; output_text: string | null }>(
          `SELECT name, state::text, output::text AS output_text FROM pgboss.job WHERE id = ANY($1::uuid[])`,
          [[tokenRun, flowRun]],
        );
        const flow = rows.find((r) => r.name === flows);
        const token = rows.find((r) => r.name === tokens);
        return (flow?.state === 'retry' || flow?.state === 'failed') && token?.state === 'completed' && { flow, token };
      });
      assert.match(states.flow.output_text ?? '', /table auth\.flow_state does not exist/);
      const { rows: leftTokens } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM auth.one_time_token WHERE expires_at < now()`);
      assert.equal(leftTokens[0]?.n, 0, 'the token table was purged beside the failing flow table');
    } finally {
      await producer.stop({ graceful: false });
    }
  });
});

const isEqual = (a: Record<string, number>, b: Record<string, number>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

/** The queries of the dashboard's repeated table row (monitoring/grafana/session-janitor.json). */
function tableRowQueries(): string[] {
  interface Panel {
    readonly type?: string;
    readonly repeat?: string;
    readonly targets?: Array<{ expr?: string }>;
  }
  const dashboard = JSON.parse(readFileSync(new URL('../monitoring/grafana/session-janitor.json', import.meta.url), 'utf8')) as { panels: Panel[] };
  const start = dashboard.panels.findIndex((p) => p.type === 'row' && p.repeat === 'table');
  assert.ok(start >= 0, 'the dashboard has a row repeated over the table variable');
  // An expanded row holds the panels that follow it, up to the next row.
  const next = dashboard.panels.findIndex((p, i) => i > start && p.type === 'row');
  const inside = dashboard.panels.slice(start + 1, next < 0 ? undefined : next);
  assert.ok(inside.length > 0, 'the table row holds its panels');
  return inside.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
}
