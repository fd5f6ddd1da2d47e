/**
 * `revoke --wait` with no worker running: it says what it waits for, and after --take-timeout says
 * in words that no worker took the job and that the job stays queued, with exit code 75.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const db = useTestDatabase();

test('revoke --wait with no worker: exit 75 after --take-timeout, the job still queued', { timeout: 60_000 }, async () => {
  const started = performance.now();
  const result = await runCli(['revoke', '--user', '42', '--reason', 'test', '--wait', '--take-timeout', '2'], { DATABASE_URL: db.url }).finished;
  const seconds = (performance.now() - started) / 1000;
  assert.equal(result.code, 75, result.stdout + result.stderr);
  const id = /enqueued revocation job ([0-9a-f-]{36})/.exec(result.stdout)?.[1];
  assert.ok(id, result.stdout);
  assert.match(result.stderr, new RegExp(`waiting for a worker to carry out revocation job ${id}`));
  assert.match(result.stderr, /^session-janitor: no worker has taken the job in 2 s; it stays queued and runs when a worker starts/m);
  assert.ok(seconds < 20, `gave up after ${seconds} s, not about 2`);
  const { rows } = await db.pool.query<{ state: string }>('SELECT state FROM pgboss.job WHERE id = $1', [id]);
  assert.equal(rows[0]?.state, 'created');
});
