/**
 * The migrations are frozen (db/sql/migrations.ts): each released file's SHA-256 is committed in
 * sql/migrations/CHECKSUMS, and this test fails when a file's text no longer matches it. A change
 * to a released migration is a new migration, never an edit.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { LATEST_VERSION, MIGRATIONS, MIGRATIONS_DIR } from '../src/db/sql/migrations.ts';

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
