/**
 * Every command form the README and docs/ print works verbatim from a fresh clone on a machine whose
 * own Node is too old for the code: the clone holds the checkout's files (no dist/, no .data/), its
 * node_modules is the one `npm ci` made (with Node 24 in node_modules/.bin), and an old Node (20)
 * comes first on PATH, so npm itself runs on it as on such a machine. A Node that cannot run the code
 * gets tools/check-node.cjs's one line, never a stack trace.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync, accessSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { copyOfCheckout } from './helpers/checkout.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCS = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).map((name) => path.join('docs', name))].filter((file) => file.endsWith('.md'));

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The first `node` on PATH whose version cannot run the code (below 22.18), outside any node_modules. */
function oldNode(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '' || dir.includes('node_modules')) continue;
    const candidate = path.join(dir, 'node');
    try {
      accessSync(candidate, constants.X_OK);
    } catch {
      continue;
    }
    const [major = 0, minor = 0] = execFileSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim().split('.').map(Number);
    if (major < 22 || (major === 22 && minor < 18)) return candidate;
  }
  throw new Error("this test needs a Node older than 22.18 on PATH (a machine whose own Node is 20), to stand first on the clone's PATH");
}

describe('the command forms the README and docs print, from a fresh clone with Node 20 first on PATH', () => {
  let clone: string;
  let old: string;
  let env: Record<string, string>;
  let db: TestDatabase;

  const run = (file: string, args: readonly string[], extra: Record<string, string> = {}): Promise<Result> =>
    new Promise((resolve) => {
      execFile(file, args, { cwd: clone, env: { ...env, ...extra }, encoding: 'utf8', timeout: 120_000 }, (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      });
    });

  before(async () => {
    clone = copyOfCheckout('sj-clone-');
    old = oldNode();
    const oldBin = path.join(clone, '..', `${path.basename(clone)}-old-node`);
    mkdirSync(oldBin);
    symlinkSync(old, path.join(oldBin, 'node'));
    // The test runner's own PATH has node_modules/.bin (Node 24) first: a user's shell does not.
    const userPath = (process.env.PATH ?? '').split(path.delimiter).filter((dir) => !dir.includes('node_modules'));
    env = { PATH: [oldBin, ...userPath].join(path.delimiter), HOME: process.env.HOME ?? tmpdir(), JANITOR_METRICS_PORT: '0' };
    db = await createTestDatabase();
  });

  after(async () => {
    rmSync(clone, { recursive: true, force: true });
    rmSync(`${clone}-old-node`, { recursive: true, force: true });
    await db.drop();
  });

  test('the clone is what a new user has: Node 20 first on PATH, no dist/', async () => {
    const version = await run('node', ['--version']);
    assert.match(version.stdout, /^v(1\d|20|21|22\.(\d|1[0-7]))\./);
    assert.equal(statSync(path.join(clone, 'dist'), { throwIfNoEntry: false }), undefined);
  });

  test('no document and no log line prints the form that needs Node 24 on PATH (`node src/cli.ts`)', () => {
    const sources = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'src', 'docs', 'README.md'], { cwd: ROOT, encoding: 'utf8' })
      .split('\n')
      .filter((file) => file !== '');
    const printing = sources.filter((file) => readFileSync(path.join(ROOT, file), 'utf8').includes('node src/cli.ts'));
    assert.deepEqual(printing, [], 'these print `node src/cli.ts`');
  });

  test('every `npx session-janitor <command>` printed runs (its --help, on the Node npm installed)', async () => {
    const help = await run('npx', ['session-janitor', '--help']);
    assert.equal(help.code, 0, help.stderr);
    const commands = [...help.stdout.matchAll(/^ {2}([a-z-]+)\b/gm)].map((m) => m[1] ?? '').filter((name) => name !== 'help');
    assert.ok(commands.includes('status') && commands.includes('revoke'), help.stdout);
    const printed = new Map<string, string>();
    for (const file of DOCS) {
      for (const match of readFileSync(path.join(ROOT, file), 'utf8').matchAll(/npx session-janitor(?: ([a-z<][a-z->]*))?/g)) {
        const command = match[1];
        if (command === undefined || command.startsWith('<')) continue;
        assert.ok(commands.includes(command), `${file} prints \`${match[0]}\`, not a command (${commands.join(', ')})`);
        printed.set(command, file);
      }
    }
    assert.ok(printed.size >= 5, `printed: ${[...printed.keys()].join(', ')}`);
    for (const [command, file] of printed) {
      const result = await run('npx', ['session-janitor', command, '--help']);
      assert.equal(result.code, 0, `${file}: \`npx session-janitor ${command} --help\`: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^Usage: session-janitor ${command} `), `${file}: ${command}`);
    }
  });

  test('`npx session-janitor status` and `npm start -- status` run for real against a database', async () => {
    for (const [file, args] of [
      ['npx', ['session-janitor', 'status']],
      ['npm', ['start', '--silent', '--', 'status']],
    ] as const) {
      const result = await run(file, args, { DATABASE_URL: db.url });
      assert.equal(result.code, 0, `${file} ${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stdout, /refresh-session\.purge-expired/, `${file} ${args.join(' ')}`);
    }
  });

  test('a mistyped command exits 64 with one line naming the known commands', async () => {
    const result = await run('npx', ['session-janitor', 'purge']);
    assert.equal(result.code, 64, result.stderr);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /^session-janitor: unknown command "purge" \(did you mean purge-expired\?\); the commands: start, migrate, purge-expired/);
  });

  test('every `npm run <script>` printed names a script of package.json', () => {
    const scripts = Object.keys((JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
    for (const file of DOCS) {
      for (const match of readFileSync(path.join(ROOT, file), 'utf8').matchAll(/npm run ([a-z:-]+)/g)) {
        assert.ok(scripts.includes(match[1] ?? ''), `${file} prints \`${match[0]}\``);
      }
    }
  });

  test('every `npx node --test ...` printed runs its options on the Node npm installed', async () => {
    const setup = path.join(clone, 'noop-setup.mjs');
    const file = path.join(clone, 'noop.test.mjs');
    writeFileSync(setup, 'export default function () {}\n');
    writeFileSync(file, "import { test } from 'node:test';\ntest('ok', () => {});\n");
    let seen = 0;
    for (const doc of DOCS) {
      for (const match of readFileSync(path.join(ROOT, doc), 'utf8').matchAll(/^npx node (--test[^\n]*)$/gm)) {
        // The printed options, on a test file and a global setup of their own (the deploy tests need kubectl).
        const options = (match[1] ?? '').split(' ').filter((word) => word.startsWith('--'));
        const args = ['node', ...options.map((option) => (option.startsWith('--test-global-setup=') ? `--test-global-setup=${setup}` : option)), file];
        const result = await run('npx', args);
        assert.equal(result.code, 0, `${doc}: npx ${args.join(' ')}: ${result.stderr}`);
        seen++;
      }
    }
    assert.ok(seen > 0);
  });

  test('a Node too old for the code gets one line that says what to run, not a stack trace', async () => {
    const result = await run(old, ['bin/session-janitor.cjs', 'status'], { DATABASE_URL: db.url });
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, /^session-janitor needs Node >= 22\.18 .*run commands as `npx session-janitor <command>`/);
  });
});
