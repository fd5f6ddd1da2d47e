/**
 * Which release runs, in a checkout: `--version` (no configuration needed), the first log line of a
 * command and session_janitor_build_info name the same version (package.json) and revision (git's
 * HEAD). The image's side (dist/REVISION from the REVISION build argument) is test/deploy/image-start.test.ts's.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createMetrics } from '../src/metrics.ts';
import { createTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string }).version;
const HEAD = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
const PGBOSS = (JSON.parse(readFileSync(`${root}node_modules/pg-boss/package.json`, 'utf8')) as { version: string }).version;
const LINE = `session-janitor ${VERSION} (revision ${HEAD}, pg-boss ${PGBOSS}, Node.js ${process.versions.node})`;

test('--version prints the version, the git revision, pg-boss and Node.js, without any configuration', async () => {
  for (const flag of ['--version', '-V']) {
    const result = await runCli([flag], {}).finished;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${LINE}\n`);
    assert.equal(result.stderr, '');
  }
});

test("the first log line of a command names the release as --version does (here `migrate`'s, on stderr)", async () => {
  const db = await createTestDatabase();
  try {
    const result = await runCli(['migrate'], { DATABASE_URL: db.url }).finished;
    assert.equal(result.code, 0, result.stderr);
    const first = JSON.parse(result.stderr.split('\n')[0] ?? '') as Record<string, unknown>;
    assert.deepEqual(
      { msg: first.msg, version: first.version, revision: first.revision, pgbossVersion: first.pgbossVersion, nodeVersion: first.nodeVersion },
      { msg: LINE, version: VERSION, revision: HEAD, pgbossVersion: PGBOSS, nodeVersion: process.versions.node },
    );
  } finally {
    await db.drop();
  }
});

test('session_janitor_build_info is 1, labelled with the same version, revision, pg-boss and Node.js versions', async () => {
  const text = await createMetrics().registry.metrics();
  const series = text.split('\n').filter((line) => line.startsWith('session_janitor_build_info'));
  assert.deepEqual(series, [
    `session_janitor_build_info{version="${VERSION}",revision="${HEAD}",pgboss_version="${PGBOSS}",node_version="${process.versions.node}"} 1`,
  ]);
});
