/**
 * `npm run test:matrix`: the database-facing suites on every PostgreSQL major the README names, each
 * major in a run of its own (its own embedded server, SJ_TEST_PG), one after the other; then one
 * line per major. `npm run test:matrix -- 15 16` runs those majors only. Exit code 1 if any failed.
 *
 * Which suites, and why these (the rest of `npm test` runs on the default major only):
 *   - plans: the planner's choices differ between majors (PostgreSQL 15 left the user_id index
 *     where 18 keeps it), and a statement off its index scans the table once per batch;
 *   - tasks/purge-expired, tasks/reap-idle, tasks/revoke, properties: rows left row for row, on the
 *     server's own locking, EvalPlanQual re-checks and xmax/snapshot functions (held rows), which
 *     are the server's, not ours;
 *   - tasks/timestamps: timestamp arithmetic and ±infinity differ between majors (arithmetic on
 *     '-infinity' fails on 15 and 16 and overflows from 17: db/sql/purge-expired.ts);
 *   - deploy/roles: sql/roles.sql's least privilege, and privileges changed between majors (the
 *     public schema's CREATE from 15, role membership and CREATEROLE from 16);
 *   - migrations: pg-boss's schema and ours are created on each major;
 *   - faults: a worker killed mid-purge: the server rolls back its open batch, the next run goes on;
 *   - tasks/latency-guard: the guard's probe commits and its write counter reads the cumulative
 *     statistics, which PostgreSQL 13 and 14 keep in the statistics collector, 15 on in memory.
 * The others test the worker's Node side (config, CLI, HTTP, logs, metrics, images, monitoring) or
 * pg-boss's queue API over the same tables; they gain nothing from a second major but minutes.
 */
import { EMBEDDED_MAJORS } from '../src/db/embedded.ts';
import { runInParallel, summary } from './setup/parallel.ts';

const SUITES = [
  'test/plans.test.ts',
  'test/tasks/purge-expired.test.ts',
  'test/tasks/reap-idle.test.ts',
  'test/tasks/revoke.test.ts',
  'test/tasks/timestamps.test.ts',
  'test/properties.test.ts',
  'test/deploy/roles.test.ts',
  'test/migrations.test.ts',
  'test/faults.test.ts',
  'test/tasks/latency-guard.test.ts',
];

const asked = process.argv.slice(2);
const majors = asked.length > 0 ? asked : EMBEDDED_MAJORS.map(String);
// Each major needs its own server: a DATABASE_URL would be one server for all of them. Two majors
// run at once (SJ_TEST_SLOTS, as in npm test), each on its own server.
const { DATABASE_URL: _ignored, SJ_TEST_SLOTS: slotsSetting, ...env } = process.env;
const slots = Number(slotsSetting ?? 2);

const started = performance.now();
const jobs = majors.map((major) => ({
  title: `PostgreSQL ${major}`,
  args: ['--test', '--test-global-setup=test/setup/global.ts', '--test-concurrency=1', '--test-reporter=spec', ...SUITES],
  env: { ...env, SJ_TEST_PG: major },
}));
const results = await runInParallel(jobs, slots, () => ({}));
const lines = results.map((result) => `${result.title}: ${result.passed ? 'pass' : 'FAIL'} in ${Math.round(result.seconds)} s`);
process.stdout.write(`\ntest:matrix (${SUITES.length} suites a major)\n${lines.join('\n')}\n${summary(results, (performance.now() - started) / 1000)}\n`);
process.exitCode = results.every((result) => result.passed) ? 0 : 1;
