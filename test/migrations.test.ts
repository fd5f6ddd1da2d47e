/**
 * The migrations are frozen (db/sql/migrations.ts): each released file's SHA-256 is committed in
 * sql/migrations/CHECKSUMS, and this test fails when a file's text no longer matches it, and when a
 * line of CHECKSUMS that a release holds changed since (read from git history, so editing a file and
 * its line together fails too). A change to a released migration is a new migration, never an edit.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { LATEST_VERSION, MIGRATIONS, MIGRATIONS_DIR, parseMigration } from '../src/db/sql/migrations.ts';
import { git, listedReleases, releaseCommit } from './helpers/releases.ts';

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

test('a line of CHECKSUMS that a release holds never changes afterwards (against git history, not just the file)', () => {
  const listed = listedReleases();
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
