/**
 * The embedded development database as a newcomer uses it, through the CLI in child processes:
 * `npm start` in one terminal, every other command in another terminal of the same checkout,
 * against the same server; a second worker joins it; Ctrl-C stops everything cleanly.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { freePort, runningServer } from '../src/db/embedded.ts';
import { QUEUES } from '../src/queues.ts';
import { runCli, type Running } from './helpers/process.ts';
import { until } from './helpers/wait.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A pino line at warn (40) or above: a clean start and stop prints none. */
const WARNING_OR_ERROR = /"level":\s*(?:"(?:warn|error|fatal)"|[4-6]0)\b/;

describe('beside a running `npm start`, every command uses the same embedded database', { timeout: 240_000 }, () => {
  let dataDir: string;
  let env: Record<string, string>;
  let worker: Running;

  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'sj-dev-'));
    // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
    await chmod(dataDir, 0o755);
    env = { JANITOR_DATA_DIR: dataDir, JANITOR_DEMO_DATA: 'false', JANITOR_PURGE_CRON: '0 0 1 1 *' };
    // A process group of its own, as a terminal gives `npm start`: Ctrl-C goes to the whole group.
    worker = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(await freePort()) }, { detached: true });
    await worker.waitFor('session-janitor worker started', 120_000);
  });

  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('dev-url prints the URL of the running server, and status, purge-expired and migrate run against it', async () => {
    const url = await runCli(['dev-url'], env).finished;
    assert.equal(url.code, 0, url.stderr);
    assert.match(url.stdout.trim(), /^postgres:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/postgres$/);
    for (const args of [['status'], ['purge-expired'], ['migrate']]) {
      const result = await runCli(args, env).finished;
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout + result.stderr, /joined the embedded PostgreSQL/);
    }
  });

  test('a second `npm start` joins as a second replica, and leaves the server running at Ctrl-C', async () => {
    const second = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(await freePort()) }, { detached: true });
    await second.waitFor('session-janitor worker started', 60_000);
    assert.match(second.output(), /joined the embedded PostgreSQL/);
    process.kill(-(second.child.pid ?? 0), 'SIGINT');
    const result = await second.finished;
    assert.equal(result.code, 0, second.output());
    assert.doesNotMatch(second.output(), WARNING_OR_ERROR);
    assert.ok(await runningServer(path.join(dataDir, 'postgres')), 'the first worker still runs the server');
  });

  test('Ctrl-C (SIGINT to the process group): exit 0, no warning or error line, the server stopped last', async () => {
    process.kill(-(worker.child.pid ?? 0), 'SIGINT');
    const result = await worker.finished;
    assert.equal(result.code, 0, worker.output());
    assert.doesNotMatch(worker.output(), WARNING_OR_ERROR);
    assert.equal(await runningServer(path.join(dataDir, 'postgres')), undefined);
    const url = await runCli(['dev-url'], env).finished;
    assert.equal(url.code, 1);
    assert.match(url.stderr, /no embedded PostgreSQL is running/);
  });
});

describe('after a kill -9', { timeout: 180_000 }, () => {
  let dataDir: string;
  let env: Record<string, string>;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'sj-dev-kill-'));
    await chmod(dataDir, 0o755);
    env = { JANITOR_DATA_DIR: dataDir, JANITOR_DEMO_DATA: 'false', JANITOR_PURGE_CRON: '0 0 1 1 *' };
  });
  after(async () => {
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('of the worker, the next command adopts its server; of the server too, postmaster.pid is stale and a new server starts', async () => {
    const worker = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(await freePort()) }, { detached: true });
    await worker.waitFor('session-janitor worker started', 120_000);
    process.kill(-(worker.child.pid ?? 0), 'SIGKILL');
    await worker.finished;
    const databaseDir = path.join(dataDir, 'postgres');
    const orphan = await runningServer(databaseDir);
    assert.ok(orphan, 'the server outlives its worker (it runs in a session of its own)');

    // A command uses the orphan (nobody else does) and stops it when it is done.
    const adopted = await runCli(['status'], env).finished;
    assert.equal(adopted.code, 0, adopted.stderr);
    assert.match(adopted.stderr, /joined the embedded PostgreSQL/);
    assert.equal(await runningServer(databaseDir), undefined);

    // A server killed with -9 leaves postmaster.pid behind: its pid is dead, so it is ignored.
    const again = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(await freePort()) }, { detached: true });
    await again.waitFor('session-janitor worker started', 120_000);
    const server = await runningServer(databaseDir);
    assert.ok(server);
    process.kill(-(again.child.pid ?? 0), 'SIGKILL');
    await again.finished;
    process.kill(server.pid, 'SIGKILL');
    await until('the server to die', async () => (await runningServer(databaseDir)) === undefined);
    const fresh = await runCli(['status', '--json'], env).finished;
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.ok(Array.isArray((JSON.parse(fresh.stdout) as { queues: unknown[] }).queues));
  });
});

describe('two replicas of `npm start`, the first killed', { timeout: 240_000 }, () => {
  let dataDir: string;
  let env: Record<string, string>;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'sj-dev-two-'));
    await chmod(dataDir, 0o755);
    env = { JANITOR_DATA_DIR: dataDir, JANITOR_DEMO_DATA: 'false', JANITOR_PURGE_CRON: '0 0 1 1 *' };
  });
  after(async () => {
    // A test that failed may leave the server running: stop it (fast shutdown) before its folder goes.
    const left = dataDir ? await runningServer(path.join(dataDir, 'postgres')) : undefined;
    if (left) process.kill(left.pid, 'SIGINT');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('kill -9 of the first, then `status`: the server stays, the second replica stays ready, and stops it at Ctrl-C', async () => {
    const databaseDir = path.join(dataDir, 'postgres');
    const first = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(await freePort()) }, { detached: true });
    await first.waitFor('session-janitor worker started', 120_000);
    const port = await freePort();
    const second = runCli(['start'], { ...env, JANITOR_METRICS_PORT: String(port), JANITOR_METRICS_HOST: '127.0.0.1' }, { detached: true });
    await second.waitFor('session-janitor worker started', 60_000);
    process.kill(-(first.child.pid ?? 0), 'SIGKILL');
    await first.finished;

    const status = await runCli(['status'], env).finished;
    assert.equal(status.code, 0, status.stderr);
    assert.ok(await runningServer(databaseDir), 'status stopped the server the second replica uses');
    // Two readiness pings later (every 5 s), the second replica still uses its database.
    const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    assert.equal(await readyz(), 200, second.output().slice(-2000));
    assert.doesNotMatch(second.output(), WARNING_OR_ERROR);

    process.kill(-(second.child.pid ?? 0), 'SIGINT');
    assert.equal((await second.finished).code, 0, second.output());
    assert.equal(await runningServer(databaseDir), undefined, 'the last replica to leave stops the server');
  });

  test('`npm start`, Ctrl-C twice while a revocation is still in flight: it exits at once, and the server does not outlive the worker', async () => {
    const databaseDir = path.join(dataDir, 'postgres');
    // `npm start` as typed in a terminal (npm, its sh, node: one process group, which Ctrl-C signals whole).
    const npm = spawn('npm', ['start'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? tmpdir(),
        ...env,
        JANITOR_METRICS_PORT: String(await freePort()),
        // The revocation below waits for its row this long, so the graceful stop is still waiting for it.
        JANITOR_LOCK_TIMEOUT: '60s',
        JANITOR_STATEMENT_TIMEOUT: '120s',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => npm.on('close', (code) => resolve(code)));
    try {
      await until('the worker to start', async () => output.includes('session-janitor worker started'), 120_000);
      const url = (await runCli(['dev-url'], env).finished).stdout.trim();
      // A session held by another transaction, and a revocation of its user that waits for it in the worker.
      const held = new pg.Client({ connectionString: url });
      held.on('error', () => undefined);
      await held.connect();
      const { rows: users } = await held.query<{ id: string }>(
        `WITH u AS (INSERT INTO auth."user" (email) VALUES ('ctrl-c@example.invalid') RETURNING id)
         INSERT INTO auth.refresh_session (user_id, expires_at) SELECT id, now() + interval '1 day' FROM u RETURNING user_id AS id`,
      );
      await held.query('BEGIN');
      await held.query('SELECT 1 FROM auth.refresh_session WHERE user_id = $1 FOR UPDATE', [users[0]?.id]);
      const boss = new PgBoss(url);
      await boss.start();
      await boss.send(QUEUES.revoke, { userId: Number(users[0]?.id), reason: 'password-changed' });
      await boss.stop({ graceful: false });
      await until(
        'the revocation to wait for the held row',
        async () => {
          // In a transaction pg_stat_activity is read once (a snapshot): clear it to see new backends.
          await held.query('SELECT pg_stat_clear_snapshot()');
          const { rows } = await held.query('SELECT 1 FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))');
          return rows.length > 0;
        },
        60_000,
      ).catch(async (error: unknown) => {
        const { rows: jobs } = await held.query(
          "SELECT name, state, start_after, created_on, now() AS now FROM pgboss.job WHERE name LIKE 'refresh-session.%'",
        );
        assert.fail(`${String(error)}\n${JSON.stringify(jobs)}\n${output}`);
      });
      process.kill(-(npm.pid ?? 0), 'SIGINT');
      await until('the first signal to be taken', async () => output.includes('finishing the batch in flight'));
      process.kill(-(npm.pid ?? 0), 'SIGINT');
      await exited;
      await held.end().catch(() => undefined);
    } finally {
      if (npm.exitCode === null && npm.signalCode === null && npm.pid !== undefined) process.kill(-npm.pid, 'SIGKILL');
    }
    assert.match(output, /second signal: exiting now/);
    await until('the server to stop', async () => (await runningServer(databaseDir)) === undefined, 30_000);
    const url = await runCli(['dev-url'], env).finished;
    assert.equal(url.code, 1);
    assert.match(url.stderr, /no embedded PostgreSQL is running/);
  });
});
