/**
 * `npm test`'s runner: one queue of jobs, SLOTS at a time, each job a process whose output is
 * printed whole when it ends:
 * 1. first the gates: lint, typecheck, the formatting check and the database-free files
 *    (configuration, manifests, rules, pure logic), without a PostgreSQL (whose servers start
 *    meanwhile). Once one fails, no further job starts, so a mistake there fails the run in seconds;
 * 2. then every other file, slowest first so that none is left alone at the end, on its slot's own
 *    PostgreSQL server (prepared by test/setup/global.ts's prepareTestServer, template included).
 *    Own servers, not one shared: the guard's and the throttle's readings (WAL, commits, vacuum)
 *    are the server's, and a neighbour's writes would move them.
 * A file listed below that needs the database fails loudly (SJ_TEST_ADMIN_URL is unset); a new file
 * not listed runs among the second, where everything works.
 *
 * SJ_TEST_SLOTS: parallel slots, default 4. Measured on this project's 2-core machine, quiet: the
 * gates first on two slots and the files after them on three, 249 s; one queue of three, 232 s
 * (the gates' 40 s no longer wait for each other); four, 204 s. The files wait (for schedule ticks,
 * outages, processes) more than they compute: with two busy loops beside it (both cores taken),
 * four slots took 317-504 s, where three in two lanes took 563-667 s. With DATABASE_URL (one
 * server for all) it is 1.
 * Arguments are passed to every file's run (e.g. --test-name-pattern=...).
 */
import { glob } from 'node:fs/promises';
import path from 'node:path';
import { cacheDir } from './helpers/promtool.ts';
import { oneLine, prepareTestServer } from './setup/global.ts';
import { runInParallel, summary, type Job } from './setup/parallel.ts';

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
const slots = databaseUrl ? 1 : Number(slotsSetting ?? 4);
// Node's compile cache, for the hundreds of processes a run starts (the files, the CLI runs): the
// src/ each one compiles is the same (measured: --version 0.65 s without, 0.40 s with).
env.NODE_COMPILE_CACHE ??= path.join(cacheDir(), 'node-compile-cache');
if (!Number.isInteger(slots) || slots < 1) await oneLine(() => Promise.reject(new Error(`SJ_TEST_SLOTS=${slotsSetting}: a whole number of 1 or more`)));

const files: string[] = [];
for await (const file of glob('test/**/*.test.ts')) files.push(file);
files.sort();
const rank = (file: string): number => (SLOWEST_FIRST.includes(file) ? SLOWEST_FIRST.indexOf(file) : SLOWEST_FIRST.length);
const databaseFiles = files.filter((file) => !DATABASE_FREE.has(file)).sort((a, b) => rank(a) - rank(b));

// The servers start while the static checks run.
const servers = Promise.all(Array.from({ length: slots }, () => prepareTestServer(databaseUrl, major)));
servers.catch(() => undefined);

const testFile = (file: string, gate: boolean): Job => ({ title: file, args: ['--test', '--test-concurrency=1', ...reporter, ...passed, file], env, gate });
const jobs: Job[] = [
  // The checks and the database-free files gate the rest: a failure there starts no further file.
  { title: 'lint (eslint)', args: ['node_modules/eslint/bin/eslint.js', '.'], env: process.env, gate: true },
  { title: 'typecheck (tsc --noEmit)', args: ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--noEmit'], env: process.env, gate: true },
  {
    title: 'formatting (prettier --check)',
    args: ['node_modules/prettier/bin/prettier.cjs', '--check', '--log-level=warn', '**/*.{ts,js,cjs}'],
    env: process.env,
    gate: true,
  },
  ...files.filter((file) => DATABASE_FREE.has(file)).map((file) => testFile(file, true)),
  ...databaseFiles.map((file) => testFile(file, false)),
];
process.stdout.write(
  `\n# npm test: lint, typecheck, formatting, ${DATABASE_FREE.size} database-free files, then ${databaseFiles.length} files on PostgreSQL; ${slots} at a time, a server a slot\n`,
);
const started = performance.now();
// Ctrl-C reaches the files' processes too (one process group); the servers are this process's to stop.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void servers.then((ready) => Promise.all(ready.map((server) => server.stop()))).finally(() => process.exit(130)));
}
try {
  const results = await runInParallel(jobs, slots, async (slot, job) =>
    job.gate ? {} : { SJ_TEST_ADMIN_URL: (await oneLine(() => servers))[slot]?.adminUrl },
  );
  const notRun = jobs.length - results.length;
  const gateNote = notRun > 0 ? `\na check failed: ${notRun} files were not run` : '';
  process.stdout.write(`\n# npm test: ${summary(results, (performance.now() - started) / 1000)}${gateNote}\n`);
  process.exitCode = notRun === 0 && results.every((result) => result.passed) ? 0 : 1;
} finally {
  await servers.then(
    (ready) => Promise.all(ready.map((server) => server.stop())),
    () => undefined,
  );
}
