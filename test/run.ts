/**
 * `npm test`'s runner, in two lanes:
 * 1. the database-free files (configuration, manifests, rules, pure logic), two at a time and without
 *    a PostgreSQL, so that a mistake there fails the run in seconds;
 * 2. every other file, one at a time, beside the one PostgreSQL of test/setup/global.ts.
 * A file listed below that needs the database fails loudly (SJ_TEST_ADMIN_URL is unset); a new file
 * not listed runs in the second lane, where everything works, only later.
 *
 * Arguments are passed to both lanes (e.g. --test-name-pattern=...).
 */
import { spawnSync } from 'node:child_process';
import { glob } from 'node:fs/promises';

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
]);

const files: string[] = [];
for await (const file of glob('test/**/*.test.ts')) files.push(file);
files.sort();

/** One lane: node's test runner on these files; whether every test passed. */
function lane(title: string, options: readonly string[], laneFiles: readonly string[]): boolean {
  process.stdout.write(`\n# ${title} (${laneFiles.length} files)\n`);
  const result = spawnSync(process.execPath, ['--test', ...options, ...process.argv.slice(2), ...laneFiles], { stdio: 'inherit' });
  return result.status === 0;
}

const fast = lane(
  'lane 1: the database-free files',
  ['--test-concurrency=2'],
  [...DATABASE_FREE].filter((f) => files.includes(f)),
);
if (!fast) process.stdout.write('\nlane 1 failed: lane 2 (the files that use PostgreSQL) was not run\n');
const slow =
  fast &&
  lane(
    'lane 2: the files that use PostgreSQL',
    ['--test-global-setup=test/setup/global.ts', '--test-concurrency=1'],
    files.filter((f) => !DATABASE_FREE.has(f)),
  );
process.exitCode = fast && slow ? 0 : 1;
