/**
 * `npm test`'s runner, in two lanes:
 * 1. lint, typecheck, the formatting check and the database-free files (configuration, manifests,
 *    rules, pure logic), two processes at a time, without a PostgreSQL (whose servers start
 *    meanwhile), so that a mistake there fails the run in seconds;
 * 2. every other file, a process each, SLOTS at a time, each slot with a PostgreSQL server of its own
 *    (prepared by test/setup/global.ts's prepareTestServer, template included). Own servers, not one
 *    shared: the guard's and the throttle's readings (WAL, commits, vacuum) are the server's, and a
 *    neighbour's writes would move them. The slowest files start first so that none is left alone
 *    at the end; each file's output is printed whole when it ends.
 * A file listed below that needs the database fails loudly (SJ_TEST_ADMIN_URL is unset); a new file
 * not listed runs in the second lane, where everything works, only later.
 *
 * SJ_TEST_SLOTS: lane 2's parallel slots, default 3. Measured on this project's 2-core machine, full
 * `npm test` on a quiet machine: one file at a time 591 s for lane 2 (11.5 min in all), 2 slots 343 s
 * (6 min 35 s), 3 slots 257 s (5 min 4 s): the files wait (for schedule ticks, outages, processes)
 * more than they compute. With DATABASE_URL (one server for all) it is 1.
 * Arguments are passed to every file's run (e.g. --test-name-pattern=...).
 */
import { glob } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir } from './helpers/promtool.ts';
import { oneLine, prepareTestServer, type TestServer } from './setup/global.ts';
import { runInParallel, summary } from './setup/parallel.ts';

const DATABASE_FREE = new Set([
  'test/config.test.ts',
  'test/deploy/dockerfile.test.ts',
  'test/deploy/k8s.test.ts',
  'test/migrations.test.ts',
  'test/monitoring/dashboard.test.ts',
  'test/monitoring/metrics-lint.test.ts',
  'test/monitoring/rules.test.ts',
  'test/readme-config.test.ts',
  'test/revoke-request.test.ts',
  'test/tasks/batching.test.ts',
  'test/tasks/freshness.test.ts',
]);

/** Lane 2's slowest files (measured), started first; the order of the rest does not matter. */
const SLOWEST_FIRST = [
  'test/replicas.test.ts',
  'test/security.test.ts',
  'test/outage-logs.test.ts',
  'test/releases.test.ts',
  'test/dev-server.test.ts',
  'test/worker.test.ts',
  'test/hints.test.ts',
  'test/tasks/purge-expired.test.ts',
  'test/faults.test.ts',
  'test/cli.test.ts',
  'test/monitoring/prometheus.test.ts',
  'test/revoke-queue.test.ts',
  'test/plans.test.ts',
  'test/command-forms.test.ts',
];

const passed = process.argv.slice(2);
const reporter = passed.some((arg) => arg.startsWith('--test-reporter')) ? [] : ['--test-reporter=spec'];
const { DATABASE_URL: databaseUrl, SJ_TEST_PG: major, SJ_TEST_SLOTS: slotsSetting, ...env } = process.env;
const slots = databaseUrl ? 1 : Number(slotsSetting ?? 3);
// Node's compile cache, for the hundreds of processes a run starts (the files, the CLI runs): the
// src/ each one compiles is the same (measured: --version 0.65 s without, 0.40 s with).
env.NODE_COMPILE_CACHE ??= path.join(cacheDir(), 'node-compile-cache');
if (!Number.isInteger(slots) || slots < 1) await oneLine(() => Promise.reject(new Error(`SJ_TEST_SLOTS=${slotsSetting}: a whole number of 1 or more`)));

const files: string[] = [];
for await (const file of glob('test/**/*.test.ts')) files.push(file);
files.sort();
const rank = (file: string): number => (SLOWEST_FIRST.includes(file) ? SLOWEST_FIRST.indexOf(file) : SLOWEST_FIRST.length);
const databaseFiles = files.filter((file) => !DATABASE_FREE.has(file)).sort((a, b) => rank(a) - rank(b));

// The servers start while lane 1 runs.
const servers = Promise.all(Array.from({ length: slots }, () => prepareTestServer(databaseUrl, major)));
servers.catch(() => undefined);

// Lane 1: the static checks beside the database-free files, two processes at a time.
const lane1Jobs = [
  { title: 'lint (eslint)', args: ['node_modules/eslint/bin/eslint.js', '.'], env: process.env },
  {
    title: 'the database-free files',
    args: ['--test', '--test-concurrency=2', ...reporter, ...passed, ...files.filter((file) => DATABASE_FREE.has(file))],
    env,
  },
  { title: 'typecheck (tsc --noEmit)', args: ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'], env: process.env },
  {
    title: 'formatting (prettier --check)',
    args: ['node_modules/prettier/bin/prettier.cjs', '--check', '--log-level=warn', '**/*.{ts,js,cjs}'],
    env: process.env,
  },
];
process.stdout.write(`\n# lane 1: lint, typecheck, formatting and the database-free files (${DATABASE_FREE.size})\n`);
const lane1 = await runInParallel(lane1Jobs, 2, () => ({}));
const ready: TestServer[] = await oneLine(() => servers);
// Ctrl-C reaches the files' processes too (one process group); the servers are this process's to stop.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void Promise.all(ready.map((server) => server.stop())).finally(() => process.exit(130)));
}
try {
  if (!lane1.every((result) => result.passed)) {
    const failed = lane1.filter((result) => !result.passed).map((result) => `FAILED: ${result.title}\n`);
    process.stdout.write(`\n${failed.join('')}lane 1 failed: lane 2 (the files that use PostgreSQL) was not run\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write(`\n# lane 2: the files that use PostgreSQL (${databaseFiles.length} files, ${slots} at a time, a server each)\n`);
    const started = performance.now();
    const jobs = databaseFiles.map((file) => ({ title: file, args: ['--test', '--test-concurrency=1', ...reporter, ...passed, file], env }));
    const results = await runInParallel(jobs, slots, (slot) => ({ SJ_TEST_ADMIN_URL: ready[slot]?.adminUrl }));
    process.stdout.write(`\n# lane 2: ${summary(results, (performance.now() - started) / 1000)}\n`);
    process.exitCode = results.every((result) => result.passed) ? 0 : 1;
  }
} finally {
  await Promise.all(ready.map((server) => server.stop()));
}
