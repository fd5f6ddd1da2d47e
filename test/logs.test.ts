/**
 * What the logs say when something fails: every error line carries the error's message, its code
 * and, for pg-boss's loops, the queue and the worker; never "[object Object]", never the connection
 * string.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startWorker } from '../src/worker.ts';
import { createLogger } from '../src/logger.ts';
import { testConfig, useTestDatabase } from './helpers/database.ts';
import { until } from './helpers/wait.ts';

const db = useTestDatabase();

interface Line {
  level: string;
  msg: string;
  err?: { type?: string; message?: string; code?: string; queue?: string; worker?: string };
}

test("pg-boss's error events are logged with message, code, queue and worker", async () => {
  const lines: string[] = [];
  const log = createLogger('warn', { write: (line: string) => void lines.push(line) });
  const worker = await startWorker(testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' }), log);
  // Every query of pg-boss's polling loops now fails (42P01 / 3F000), as it would with a schema
  // dropped by mistake; pg-boss reports each failure as a plain object on 'error'.
  await db.pool.query('ALTER SCHEMA pgboss RENAME TO pgboss_away');
  try {
    await until(
      "an error line of pg-boss's revoke loop",
      async () => lines.map((l) => JSON.parse(l) as Line).find((l) => l.msg === 'pg-boss error' && l.err?.queue === 'refresh-session.revoke'),
      15_000,
    );
  } finally {
    await db.pool.query('ALTER SCHEMA pgboss_away RENAME TO pgboss');
    await worker.stop();
  }
  assert.ok(!lines.some((l) => l.includes('[object Object]')), 'an error logged as [object Object]');
  const url = new URL(db.url);
  assert.ok(!lines.some((l) => l.includes(url.password) || l.includes(db.url)), 'the connection string or its password in a log line');
  const errors = lines.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'pg-boss error');
  assert.ok(errors.length > 0);
  for (const line of errors) {
    assert.equal(line.level, 'error');
    assert.match(line.err?.message ?? '', /does not exist/, JSON.stringify(line));
    assert.match(line.err?.code ?? '', /^(42P01|3F000|42883)$/, JSON.stringify(line));
  }
  const loop = errors.find((l) => l.err?.queue === 'refresh-session.revoke');
  assert.ok(loop?.err?.worker, 'the failing worker loop is named');
});
