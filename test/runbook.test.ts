/**
 * The runbook's log filters (docs/runbook.md: `kubectl logs ... | grep ...`) find what they look for
 * in real log lines: a worker on a database without the sessions table (nor the extra table it is
 * configured with), which logs an error for each and its schedules, and a purge that deletes nothing because an open transaction holds every expired row in
 * a savepoint (a stalled run, logged by the batch engine the worker runs too). Each filter is run as
 * printed, by sh, on that output.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { createTestDatabase, holdRow, insertBulkSessions, releaseAll, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const RUNBOOK = readFileSync(new URL('../docs/runbook.md', import.meta.url), 'utf8');
const FILTERS = [...RUNBOOK.matchAll(/^kubectl .* logs .*? \| (grep .*)$/gm)].map((m) => m[1] ?? '');

let db: TestDatabase;
let held: TestDatabase;
let output = '';
before(async () => {
  db = await createTestDatabase();
  await db.pool.query('ALTER TABLE auth.refresh_session RENAME TO refresh_session_elsewhere');
  // An extra table that is not there either: the line its runbook section greps for.
  const worker = runCli(['start'], {
    DATABASE_URL: db.url,
    JANITOR_METRICS_PORT: '0',
    JANITOR_METRICS_HOST: '127.0.0.1',
    JANITOR_PURGE_TABLES: 'auth.one_time_token:expires_at',
  });
  await worker.waitFor('session-janitor worker started', 60_000);
  worker.child.kill('SIGTERM');
  output = (await worker.finished).stdout;

  held = await createTestDatabase();
  await insertBulkSessions(held.pool, 60, 50 / 60);
  const holders = await holdRow(held.url, 0, 'savepoint');
  try {
    await holders[0]?.query('SELECT 1 FROM auth.refresh_session WHERE expires_at < now() FOR UPDATE');
    // A one-shot command logs to stderr, the same JSON lines as the worker's stdout.
    output += (await runCli(['purge-expired'], { DATABASE_URL: held.url, JANITOR_LOCK_TIMEOUT: '50ms' }).finished).stderr;
  } finally {
    await releaseAll(holders);
  }
});
after(async () => {
  await db?.drop();
  await held?.drop();
});

test('the runbook has log filters to check', () => {
  assert.ok(FILTERS.length >= 3, FILTERS.join('\n'));
});

for (const filter of FILTERS) {
  test(`\`| ${filter}\` matches the worker's real log lines`, async () => {
    const matched = await new Promise<string>((resolve, reject) => {
      const child = execFile('sh', ['-c', filter], (error, stdout) => (error ? reject(new Error(`${filter}: ${error.message}`)) : resolve(stdout)));
      child.stdin?.end(output);
    });
    assert.ok(matched.trim().length > 0, `${filter} matched nothing in:\n${output}`);
  });
}
