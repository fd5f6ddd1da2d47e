/**
 * Every command docs/runbook.md prints is run, as printed, against real output: each fenced block by
 * its language (sh, sql, promql, yaml; a block of another kind, or none, fails this test) and each
 * inline command (a code span that starts with kubectl, npx, node, curl, psql, SELECT or UPDATE, or a
 * PromQL function applied to the worker's series).
 *
 * - sql: on a connection to a database with the schema, a worker's job history, a stalled purge, a
 *   dead-lettered invalid revocation and a row held in a savepoint; placeholders (`<pid>`,
 *   `<dead-letter job id>`) are replaced by a real backend's pid and a real dead-letter job's id.
 * - promql: by a real Prometheus that scrapes the worker and evaluates the shipped rules; each
 *   expression must evaluate, and each `metric{labels}` it names must select a series.
 * - sh: by sh, with test/helpers/fake-kubectl.ts first on PATH as `kubectl` (no cluster here: the
 *   real kubectl parses each command, the names and selectors must be what `kubectl kustomize
 *   k8s/base` renders, and the answers are the worker's: its logs, the CLI in the "pod"). A pipe's
 *   filter must match, a command that prints must print.
 * - yaml: the Alertmanager snippet must name alerts the rules define.
 *
 * What is not run is listed in NOT_RUN with the reason; a new command that is neither fails.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { parse, parseAllDocuments } from 'yaml';
import { freePort } from '../src/db/embedded.ts';
import { QUEUES } from '../src/queues.ts';
import { createTestDatabase, holdRow, insertBulkSessions, releaseAll, useTestDatabase, type TestDatabase } from './helpers/database.ts';
import { RULES, startPrometheus, type Prometheus } from './helpers/prometheus.ts';
import { runCli, type Running } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNBOOK = readFileSync(path.join(ROOT, 'docs', 'runbook.md'), 'utf8');
const KINDS = ['sh', 'sql', 'promql', 'yaml'] as const;
type Kind = (typeof KINDS)[number];

interface Command {
  readonly kind: Kind;
  readonly text: string;
  readonly line: number;
}

/** Commands printed but not run, and why. */
const NOT_RUN = new Map<string, string>([
  ['last_over_time(session_janitor:...:max[1d])', "a pattern of the alerts' expressions (`...` stands for each recording), not one to run"],
  [
    'psql "$DATABASE_URL"',
    'how to reach the database the SQL runs on; the test runs each SQL block on a connection of its own (psql is no dependency of the checkout)',
  ],
]);

/** Selectors that select nothing here, and why. */
const NO_SERIES = new Map<string, string>([
  ['up{namespace="<namespace>"}', 'the namespace label is added by the Prometheus Operator; the test scrapes without Kubernetes'],
]);

const lineOf = (index: number) => RUNBOOK.slice(0, index).split('\n').length;

function printedCommands(): { commands: Command[]; untyped: string[] } {
  const commands: Command[] = [];
  const untyped: string[] = [];
  const fence = /^( *)```([a-z]*)\n([\s\S]*?)\n\1```$/gm;
  for (const match of RUNBOOK.matchAll(fence)) {
    const [, indent = '', language = '', body = ''] = match;
    const line = lineOf(match.index);
    const kind = KINDS.find((k) => k === language);
    if (kind === undefined) {
      untyped.push(`line ${line}: \`\`\`${language}`);
      continue;
    }
    const text = body
      .split('\n')
      .map((l) => l.slice(indent.length))
      .join('\n');
    if (kind === 'sql' || kind === 'yaml') commands.push({ kind, text, line });
    else {
      // One command or expression a line; `#` starts a comment in both.
      text.split('\n').forEach((l, i) => {
        if (l.trim() !== '' && !l.trim().startsWith('#')) commands.push({ kind, text: l, line: line + 1 + i });
      });
    }
  }
  // Inline commands, outside the fences (a span may wrap over a line break).
  const prose = RUNBOOK.replace(fence, (block) => block.replace(/[^\n]/g, ' '));
  for (const match of prose.matchAll(/`([^`]+)`/g)) {
    const text = (match[1] ?? '').replace(/\s+/g, ' ').trim();
    const first = text.split(' ')[0] ?? '';
    // An expression quoted from the rules starts with a function and names the worker's series.
    const promql = /^[a-z_]+\(/.test(text) && /session_janitor|up\{/.test(text);
    const kind: Kind | undefined = ['kubectl', 'npx', 'node', 'curl', 'psql'].includes(first)
      ? 'sh'
      : ['SELECT', 'UPDATE'].includes(first)
        ? 'sql'
        : promql
          ? 'promql'
          : undefined;
    if (kind !== undefined) commands.push({ kind, text, line: lineOf(match.index) });
  }
  return { commands: commands.sort((a, b) => a.line - b.line), untyped };
}

const { commands: COMMANDS, untyped: UNTYPED } = printedCommands();
const EXTRA_TABLES = 'auth.one_time_token:expires_at';

describe("every command of the runbook, run on a real worker's output", { timeout: 240_000 }, () => {
  let broken: TestDatabase;
  let worker: Running;
  let prometheus: Prometheus;
  let holders: pg.Client[] = [];
  let work: string;
  let metricsPort: number;
  let validDeadLetter = '';
  const victims: pg.Client[] = [];

  // Registered before the database's own hooks, so that it runs first: nothing is connected when it is dropped.
  after(async () => {
    await releaseAll(holders);
    for (const victim of victims) await victim.end().catch(() => undefined);
    await prometheus?.stop();
    worker?.child.kill('SIGTERM');
    await worker?.finished;
    await broken?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });
  const db = useTestDatabase();

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'sj-runbook-'));
    broken = await createTestDatabase();
    await broken.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_elsewhere');
    await insertBulkSessions(db.pool, 60, 50 / 60);
    // The extra table the runbook's JANITOR_PURGE_TABLES sections name, there for the worker and the commands.
    await db.pool.query(
      `CREATE TABLE auth.one_time_token (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), expires_at timestamptz NOT NULL);
       CREATE INDEX ON auth.one_time_token (expires_at);
       INSERT INTO auth.one_time_token (expires_at) SELECT now() + g * interval '1 minute' FROM generate_series(-5, 5) AS g`,
    );
    metricsPort = await freePort();
    const prometheusStarted = startPrometheus(`127.0.0.1:${metricsPort}`);
    worker = runCli(['start'], {
      DATABASE_URL: db.url,
      JANITOR_METRICS_PORT: String(metricsPort),
      JANITOR_METRICS_HOST: '127.0.0.1',
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
      JANITOR_GAUGE_REFRESH_CRON: '* * * * * *',
      JANITOR_SUPERVISE_INTERVAL: '1s',
      JANITOR_PURGE_TABLES: EXTRA_TABLES,
    });
    // A worker on a database without the sessions table, nor the extra table it is configured with:
    // the error lines the runbook's filters look for.
    const refused = runCli(['start'], {
      DATABASE_URL: broken.url,
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
      JANITOR_PURGE_TABLES: EXTRA_TABLES,
    });
    await Promise.all([worker.waitFor('session-janitor worker started', 60_000), refused.waitFor('session-janitor worker started', 60_000)]);
    refused.child.kill('SIGTERM');
    let logs = (await refused.finished).stdout;
    prometheus = await prometheusStarted;

    // The user the runbook revokes has no sessions here: its revocations complete beside the held rows.
    await db.pool.query('DELETE FROM auth.refresh_session WHERE user_id = 42');
    // A stalled purge: every expired row held in a savepoint of an open transaction.
    holders = await holdRow(db.url, 0, 'savepoint');
    try {
      await holders[0]?.query('SELECT 1 FROM auth.refresh_session WHERE expires_at < now() FOR UPDATE');
      // A one-shot command logs to stderr, the same JSON lines as the worker's stdout.
      logs += (await runCli(['purge-expired'], { DATABASE_URL: db.url, JANITOR_LOCK_TIMEOUT: '50ms' }).finished).stderr;
    } finally {
      await releaseAll(holders);
    }
    // For the lock queries, a live session held in a savepoint, which no purge or reap waits for.
    const { rows: live } = await db.pool.query<{ id: string }>('SELECT id FROM auth.refresh_session WHERE expires_at > now() LIMIT 1');
    holders = await holdRow(db.url, Number(live[0]?.id), 'savepoint');

    // An invalid revocation, dead-lettered by the worker; and a valid request's dead-letter copy, to resend.
    const boss = new PgBoss(db.url);
    await boss.start();
    try {
      await boss.send(QUEUES.revoke, { userId: 42 });
      // A reap the worker completes: the reap's last-success gauge has a value to show.
      await boss.send(QUEUES.reapIdle, {});
      validDeadLetter = (await boss.send(QUEUES.deadLetter, { userId: 42, reason: 'password-changed' })) ?? '';
    } finally {
      await boss.stop({ graceful: false });
    }
    await until('the invalid revocation to be dead-lettered', async () => {
      const { rowCount } = await db.pool.query('SELECT 1 FROM pgboss.job WHERE name = $1 AND source_name = $2', [QUEUES.deadLetter, QUEUES.revoke]);
      return rowCount === 1;
    });
    for (const series of ['session_janitor_jobs_total{outcome="rejected"} > 0', 'session_janitor_last_success_timestamp_seconds{task="reap-idle"}']) {
      await until(`Prometheus to scrape ${series}`, async () => (await prometheus.query(series)).length > 0);
    }
    writeFileSync(path.join(work, 'logs'), logs + worker.output());

    // The stand-in cluster.
    const kubectl = execFileSync('which', ['kubectl'], { encoding: 'utf8' }).trim();
    const manifests = parseAllDocuments(execFileSync(kubectl, ['kustomize', path.join(ROOT, 'k8s', 'base')], { encoding: 'utf8' })).map(
      (doc) => doc.toJSON() as unknown,
    );
    writeFileSync(path.join(work, 'manifests.json'), JSON.stringify(manifests));
    writeFileSync(
      path.join(work, 'kubeconfig'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'none', cluster: { server: 'https://127.0.0.1:1' } }],
        users: [{ name: 'none', user: { token: 'none' } }],
        contexts: [{ name: 'none', context: { cluster: 'none', user: 'none' } }],
        'current-context': 'none',
      }),
    );
    const bin = path.join(work, 'bin');
    execFileSync('mkdir', [bin]);
    writeFileSync(
      path.join(bin, 'kubectl'),
      `#!/bin/sh\nexec "${process.execPath}" "${fileURLToPath(new URL('helpers/fake-kubectl.ts', import.meta.url))}" "$@"\n`,
    );
    chmodSync(path.join(bin, 'kubectl'), 0o755);
    shellEnv = {
      PATH: [bin, process.env.PATH ?? ''].join(path.delimiter),
      HOME: process.env.HOME ?? tmpdir(),
      NS: 'session-janitor-test',
      DATABASE_URL: db.url,
      JANITOR_PURGE_TABLES: EXTRA_TABLES,
      SJ_FAKE_REAL_KUBECTL: kubectl,
      SJ_FAKE_KUBECONFIG: path.join(work, 'kubeconfig'),
      SJ_FAKE_MANIFESTS: path.join(work, 'manifests.json'),
      SJ_FAKE_KUSTOMIZATION: path.join(ROOT, 'k8s', 'base'),
      SJ_FAKE_LOGS: path.join(work, 'logs'),
      SJ_FAKE_DATABASE_URL: db.url,
      SJ_FAKE_METRICS_PORT: String(metricsPort),
    };
  });

  let shellEnv: Record<string, string> = {};

  test('every fenced block says its kind (sh, sql, promql, yaml)', () => {
    assert.deepEqual(UNTYPED, []);
  });

  test('the runbook has commands of every kind to run', () => {
    for (const kind of KINDS)
      assert.ok(
        COMMANDS.some((c) => c.kind === kind),
        kind,
      );
  });

  // A line printed more than once runs once (its first test), as the runbook's reader would rerun it.
  const ran = new Map<string, Promise<{ code: number; stdout: string; stderr: string }>>();
  const shell = (line: string) => {
    const earlier = ran.get(line);
    if (earlier) return earlier;
    const result = new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile('sh', ['-c', line], { cwd: ROOT, env: shellEnv, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
      );
    });
    ran.set(line, result);
    return result;
  };

  const runSql = async (text: string) => {
    let sql = text;
    while (sql.includes('<pid>')) {
      // A backend of its own to end, so that each pg_terminate_backend has a real one.
      const victim = new pg.Client({ connectionString: db.url });
      victim.on('error', () => undefined);
      await victim.connect();
      victims.push(victim);
      const { rows } = await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      sql = sql.replace('<pid>', String(rows[0]?.pid));
    }
    sql = sql.replaceAll('<dead-letter job id>', validDeadLetter);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const results: pg.QueryResult[] = [];
      for (const statement of sql.split(/;\s*$/m).filter((s) => s.replace(/--.*$/gm, '').trim() !== '')) {
        results.push(await client.query(statement).catch((error: unknown) => assert.fail(`line: ${statement.trim()}\n${String(error)}`)));
      }
      return { sql, results };
    } finally {
      await client.end();
    }
  };

  for (const command of COMMANDS) {
    const name = `line ${command.line} (${command.kind}): ${command.text.split('\n').find((l) => !l.startsWith('--')) ?? ''}`;
    const reason = NOT_RUN.get(command.text);
    if (reason !== undefined) {
      test(`${name}: not run (${reason})`, () => assert.ok(reason.length > 0));
      continue;
    }
    test(name, async () => {
      if (command.kind === 'sh') {
        const line = command.text
          .replace(/^(.*?)\s+#.*$/, '$1')
          .replaceAll('<pod>', 'session-janitor-5d8c7b9f4-x2x7q')
          .replaceAll('localhost:9464', `127.0.0.1:${metricsPort}`)
          .replace('<url of this file>', 'https://git.example.org/auth/session-janitor/-/blob/main/docs/runbook.md');
        const result = await shell(line);
        assert.equal(result.code, 0, `${line}\n${result.stderr}`);
        if (/\b(logs|exec|curl|npx|node|configmap)\b/.test(line)) assert.ok((result.stdout + result.stderr).trim().length > 0, `${line} printed nothing`);
        if (/dist\/cli\.js status|session-janitor status/.test(line)) assert.match(result.stdout, /refresh-session\.purge-expired/);
        if (line.includes('--runbook-url-base'))
          assert.match(result.stdout, /runbook_url: https:\/\/git\.example\.org\/auth\/session-janitor\/-\/blob\/main\/docs\/runbook\.md#/);
      } else if (command.kind === 'sql') {
        const { sql, results } = await runSql(command.text);
        const rows = results.flatMap((r) => r.rows as Record<string, unknown>[]);
        if (sql.includes('pg_terminate_backend')) assert.deepEqual(rows, [{ pg_terminate_backend: true }]);
        if (sql.includes("name = 'refresh-session.purge-expired'")) assert.ok(rows.length > 0, 'the purge runs');
        if (sql.includes('FROM pgboss.schedule')) assert.ok(rows.length >= 2, 'the schedules');
        if (sql.includes("name = 'refresh-session.dead-letter' AND state = 'created'"))
          assert.ok(
            rows.some((row) => row.reason === 'invalid_payload'),
            JSON.stringify(rows),
          );
        if (sql.includes('FROM pg_locks'))
          assert.ok(
            rows.some((row) => row.granted === true),
            'the held rows',
          );
        if (sql.includes('enqueue_revocation')) assert.match(String(Object.values(rows[0] ?? {})[0]), /^[0-9a-f-]{36}$/, 'a job id');
        if (sql.startsWith('UPDATE')) assert.equal(results[0]?.rowCount, 1);
      } else if (command.kind === 'promql') {
        const expression = command.text.replace(/\s+#.*$/, '');
        await prometheus.query(expression);
        for (const match of expression.matchAll(/([a-zA-Z_:][\w:]*)\{([^}]*)\}/g)) {
          const selector = match[0];
          const why = NO_SERIES.get(selector);
          if (why !== undefined) continue;
          assert.ok((await prometheus.query(selector)).length > 0, `${selector} selects no series of the worker`);
        }
      } else {
        const alerts = new Set(
          (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert?: string }[] }[] }).groups.flatMap((g) =>
            g.rules.flatMap((r) => (r.alert ? [r.alert] : [])),
          ),
        );
        const named = [...command.text.matchAll(/alertname=~?"([^"]+)"/g)].map((m) => m[1] ?? '');
        assert.ok(named.length > 0);
        for (const name of named)
          assert.ok(
            [...alerts].some((alert) => new RegExp(`^(?:${name})$`).test(alert)),
            `${name} names no alert of the rules`,
          );
      }
    });
  }
});
