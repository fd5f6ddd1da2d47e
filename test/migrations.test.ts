/**
 * The migrations are frozen (db/sql/migrations.ts): each released file's SHA-256 is committed in
 * sql/migrations/CHECKSUMS, and this test fails when a file's text no longer matches it, and when a
 * line of CHECKSUMS that a release holds changed since (read from git history, so editing a file and
 * its line together fails too). A change to a released migration is a new migration, never an edit.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.ts';
import { LATEST_VERSION, MIGRATIONS, MIGRATIONS_DIR, parseMigration } from '../src/db/sql/migrations.ts';

const checksums = new Map(
  readFileSync(new URL('CHECKSUMS', MIGRATIONS_DIR), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [hash, file] = line.split(/\s+\*?/);
      return [file ?? '', hash ?? ''] as const;
    }),
);

test('every migration file matches its committed checksum (a released migration never changes)', () => {
  for (const { file, text } of MIGRATIONS) {
    const expected = checksums.get(file);
    assert.ok(expected, `${file} has no line in sql/migrations/CHECKSUMS: add \`sha256sum ${file}\` when the migration is new`);
    const actual = createHash('sha256').update(text).digest('hex');
    assert.equal(actual, expected, `${file} changed after its release: revert it and write the change as a new migration`);
  }
});

test('the migrations are numbered 1..N without a gap, one file each, and CHECKSUMS lists exactly those', () => {
  assert.deepEqual(
    MIGRATIONS.map((m) => m.version),
    Array.from({ length: LATEST_VERSION }, (_, i) => i + 1),
  );
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .sort();
  assert.deepEqual(
    files,
    MIGRATIONS.map((m) => m.file),
  );
  assert.deepEqual([...checksums.keys()].sort(), files);
});

test('only the placeholders are filled in: the schema, quoted', () => {
  const config = loadConfig({ DATABASE_URL: 'postgres://localhost/x', PGBOSS_SCHEMA: 'jobs', LOG_LEVEL: 'silent' });
  for (const { file, text, sql: fill } of MIGRATIONS) {
    const sql = fill(config);
    assert.doesNotMatch(sql, /\{\{/, file);
    assert.equal(sql, text.replaceAll('{{pgboss_schema}}', '"jobs"').replaceAll('{{pgboss_schema_literal}}', "'jobs'"));
  }
});

const root = fileURLToPath(new URL('../', import.meta.url));
const git = (...args: string[]): string => execFileSync('git', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** The releases CHANGELOG.md lists (`## X.Y.Z`), oldest first. */
function releases(): string[] {
  const changelog = readFileSync(new URL('CHANGELOG.md', `file://${root}`), 'utf8');
  return [...changelog.matchAll(/^## (\d+\.\d+\.\d+)\b/gm)].map((m) => m[1] ?? '').reverse();
}

/**
 * The commit that released a version: its tag vX.Y.Z where the clone has it (a plain clone of main
 * has the tags of main's commits), else the first commit whose CHANGELOG.md has its heading.
 */
function releaseCommit(version: string): string {
  try {
    return git('rev-parse', '--verify', '--quiet', `refs/tags/v${version}^{commit}`);
  } catch {
    // No such tag here: the heading's first commit.
  }
  let first = '';
  try {
    first = git('log', '--format=%H', '--reverse', '-S', `## ${version}`, '--', 'CHANGELOG.md').split('\n')[0] ?? '';
  } catch (error) {
    assert.fail(`cannot read git history to check that released migrations are frozen (is this a git clone, with git on PATH?): ${String(error)}`);
  }
  assert.ok(
    first !== '',
    `release ${version} is in CHANGELOG.md, but no commit of this clone's history adds its heading and there is no tag v${version}: a shallow clone? (git fetch --unshallow --tags)`,
  );
  return first;
}

test('a line of CHECKSUMS that a release holds never changes afterwards (against git history, not just the file)', () => {
  const listed = releases();
  assert.ok(listed.length > 0, 'CHANGELOG.md lists no release');
  const current = readFileSync(new URL('CHECKSUMS', MIGRATIONS_DIR), 'utf8').trim().split('\n');
  for (const version of listed) {
    const commit = releaseCommit(version);
    const released = git('show', `${commit}:sql/migrations/CHECKSUMS`).split('\n');
    assert.ok(released.length > 0, `release ${version} (${commit}) has no CHECKSUMS`);
    for (const line of released) {
      assert.ok(
        current.includes(line),
        `release ${version} (commit ${commit.slice(0, 12)}) holds \`${line}\` in sql/migrations/CHECKSUMS, which is no longer there: a released migration never changes; revert it and write the change as a new migration`,
      );
    }
  }
});

test('each migration is described by its own header, and `--! breaking` marks a breaking one', () => {
  for (const m of MIGRATIONS) {
    const first = m.text.split('\n')[0] ?? '';
    assert.equal(first, `-- session_janitor migration ${m.version}: ${m.description}`);
    // Migrations 1-6 were released before any could be breaking.
    if (m.version <= 6) assert.equal(m.breaking, false, m.file);
  }
  const header = '-- session_janitor migration 9: drop the old column\n-- why it is safe\n';
  assert.equal(parseMigration('000009.sql', `${header}ALTER TABLE t DROP COLUMN c;\n`).breaking, false);
  const breaking = parseMigration('000009.sql', `${header}--! breaking\nALTER TABLE t DROP COLUMN c;\n`);
  assert.deepEqual([breaking.version, breaking.description, breaking.breaking], [9, 'drop the old column', true]);
  // A directive after the first statement is a comment of the SQL, not a header.
  assert.equal(parseMigration('000009.sql', `${header}SELECT 1;\n--! breaking\n`).breaking, false);
  assert.throws(() => parseMigration('000009.sql', `${header}--! braking\nSELECT 1;\n`), /000009\.sql: unknown header directive `--! braking`/);
  assert.throws(() => parseMigration('000009.sql', '-- session_janitor migration 8: wrong number\nSELECT 1;\n'), /000009\.sql: the first line must be/);
  assert.throws(() => parseMigration('000009.sql', 'SELECT 1;\n'), /the first line must be/);
});
