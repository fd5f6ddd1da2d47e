/**
 * The decision of db/compatibility.ts, apart from the database: what each edge (migrate, a worker
 * with JANITOR_MIGRATE=false, a one-shot command) accepts. The database side is test/releases.test.ts's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { schemaProblem, type CodeVersions, type Edge, type SchemaState } from '../src/db/compatibility.ts';

const code: CodeVersions = { release: '0.2.0', ownLatest: 6, pgbossVersion: '12.38.0', pgbossSchema: 46 };
const current: SchemaState = { database: 'app', own: 6, newerBreaking: null, pgboss: 46 };
const EDGES: readonly Edge[] = ['migrate', 'worker', 'command'];

test('the schemas of this release, or a later release without a breaking migration: every edge runs', () => {
  for (const edge of EDGES) {
    assert.equal(schemaProblem(current, code, edge, 'pgboss'), null, edge);
    assert.equal(schemaProblem({ ...current, own: 9 }, code, edge, 'pgboss'), null, edge);
  }
});

test('a breaking migration this release does not know, or a newer pgboss schema: every edge refuses, migrate too', () => {
  for (const edge of EDGES) {
    assert.match(
      schemaProblem({ ...current, own: 8, newerBreaking: { version: 7, release: '0.3.0' } }, code, edge, 'pgboss') ?? '',
      /^the session_janitor schema has migration 7, marked breaking, applied by release 0\.3\.0: release 0\.2\.0 knows migrations up to 6 .*run release 0\.3\.0 or later/,
    );
    // Applied by a release that did not record itself: still refused.
    assert.match(
      schemaProblem({ ...current, own: 7, newerBreaking: { version: 7, release: null } }, code, edge, 'pgboss') ?? '',
      /applied by a later release: .*; run a later release or later/,
    );
    assert.match(
      schemaProblem({ ...current, pgboss: 47 }, code, edge, 'jobs') ?? '',
      /^the pg-boss schema jobs is at version 47, newer than pg-boss 12\.38\.0/,
    );
  }
});

test('a schema not installed or behind: migrate installs it; the worker and the commands say to run migrate', () => {
  for (const state of [
    { ...current, own: 0, pgboss: null },
    { ...current, own: 5 },
    { ...current, pgboss: 30 },
  ]) {
    assert.equal(schemaProblem(state, code, 'migrate', 'pgboss'), null);
    assert.match(
      schemaProblem(state, code, 'worker', 'pgboss') ?? '',
      /: run `npx session-janitor migrate` \(JANITOR_MIGRATE=false forbids the worker to do it\)$/,
    );
    assert.match(schemaProblem(state, code, 'command', 'pgboss') ?? '', /: run `npx session-janitor migrate`$/);
  }
  assert.equal(
    schemaProblem({ ...current, pgboss: null }, code, 'command', 'pgboss'),
    'pg-boss is not installed in schema pgboss of app: run `npx session-janitor migrate`',
  );
});
