/**
 * Each test gets a database of its own, cloned from the template that test/setup/global.ts built.
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, before } from 'node:test';
import pg from 'pg';
import { createBoss } from '../../src/boss.ts';
import { loadConfig, type Config, type LogLevel } from '../../src/config.ts';
import { createAuthTables } from '../../src/db/dev-bootstrap.ts';
import { install } from '../../src/install.ts';
import { QUEUES } from '../../src/queues.ts';
import { createPool } from '../../src/db/pool.ts';
import { createLogger, type Logger } from '../../src/logger.ts';
import { createMetrics } from '../../src/metrics.ts';
import type { TaskContext } from '../../src/tasks/context.ts';

export const TEMPLATE_DATABASE = 'session_janitor_template';

/** What a production database holds before the worker starts: the auth tables, then `migrate`. */
export async function installSchema(url: string): Promise<void> {
  const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' });
  const log = createLogger('silent');
  const pool = createPool({ connectionString: url, max: 2, statementTimeoutMs: 0, lockTimeoutMs: 0 });
  try {
    await createAuthTables(pool);
    const boss = createBoss(config, url, { role: 'tool', migrate: true }, log);
    await install(boss, pool, config, log, true);
    // Databases cloned from a template with schedules would see every tick since the template was
    // made as missed, and each worker would start with a catch-up run nobody asked for. Tests
    // register the schedules they want by starting a worker.
    for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle]) await boss.unschedule(queue);
    await boss.stop({ graceful: false });
  } finally {
    await pool.end();
  }
}

export function databaseUrl(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

function adminUrl(): string {
  const url = process.env.SJ_TEST_ADMIN_URL;
  if (!url) throw new Error('SJ_TEST_ADMIN_URL is unset: run the tests with `npm test` (it sets up the database server)');
  return url;
}

export interface TestDatabase {
  readonly url: string;
  /** A pool without statement or lock timeouts, for arranging and checking rows. */
  readonly pool: pg.Pool;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `sj_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DATABASE}`);
  } finally {
    await admin.end();
  }
  const url = databaseUrl(adminUrl(), name);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  return {
    url,
    pool,
    drop: async () => {
      await closePool(pool);
      const client = new pg.Client({ connectionString: adminUrl() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/**
 * Ends a pool once its connections have closed. pool.end() resolves when it has asked its idle
 * connections to close, not when they have: a DROP DATABASE ... WITH (FORCE) right after it may end
 * a backend still closing, whose FATAL the pool re-emits as 'error', an uncaught exception without
 * a listener ("terminating connection due to administrator command ... after the test ended", seen
 * in full runs under load).
 */
export async function closePool(pool: pg.Pool): Promise<void> {
  pool.on('error', () => undefined);
  const open = pool.totalCount;
  let removed = 0;
  const closed = new Promise<void>((resolve) => {
    if (open === 0) resolve();
    pool.on('remove', () => {
      if (++removed >= open) resolve();
    });
  });
  await pool.end();
  await closed;
}

/**
 * The enclosing suite's own database (the file's, at top level): created before its first test and
 * dropped after its last, by hooks registered where this is called (after-hooks run in the order
 * they were registered). Outside those tests, reading it throws.
 */
export function useTestDatabase(): TestDatabase {
  let current: TestDatabase | undefined;
  before(async () => {
    current = await createTestDatabase();
  });
  after(async () => {
    await current?.drop();
    current = undefined;
  });
  const database = () => {
    if (current === undefined) throw new Error('useTestDatabase(): the database exists only while the tests of the suite that asked for it run');
    return current;
  };
  return {
    get url() {
      return database().url;
    },
    get pool() {
      return database().pool;
    },
    drop: () => database().drop(),
  };
}

/**
 * The worker's configuration for a test database: defaults, no HTTP port clash, quiet logs. The
 * blast-radius guard is off unless a test turns it on (test/blast-guard.test.ts): the fixtures insert
 * rows that expired or went idle before a run that drained already, what the guard stops on.
 */
export function testConfig(url: string, env: Record<string, string> = {}): Config {
  return loadConfig({ DATABASE_URL: url, JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1', LOG_LEVEL: 'silent', ...BLAST_RADIUS_OFF, ...env });
}

/** See testConfig: the guard off for the tests of everything else (this checkout's CLI too, test/helpers/process.ts). */
export const BLAST_RADIUS_OFF = { JANITOR_BLAST_RADIUS: 'off' } as const;

export const silentLogger = (): Logger => createLogger('silent');

/** A logger at `level` that keeps its lines (one JSON object each) in `lines`: the log a test reads. */
export function capturingLogger(level: LogLevel): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger(level, sink), lines };
}

/** A task context on its own pool (with the worker's timeouts); close it with ctx.pool.end(). */
export function taskContext(config: Config, max = config.purgeConcurrency + 2): TaskContext {
  const url = config.databaseUrl;
  if (url === undefined) throw new Error('a test config always has a DATABASE_URL');
  const pool = createPool({
    connectionString: url,
    max,
    statementTimeoutMs: config.statementTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
  });
  return { pool, config, metrics: createMetrics(), log: silentLogger() };
}

export interface SessionSpec {
  /** expires_at = now() + this many seconds (negative: already expired). */
  readonly expiresIn: number;
  /** last_used_at = now() - this many seconds. Default 0. */
  readonly idleFor?: number;
  /** created_at = now() - this many seconds. Default 1 day. */
  readonly age?: number;
  /** Index into the users created for this insert. Default: one user per session. */
  readonly user?: number;
}

export interface InsertedSession {
  readonly id: number;
  readonly jti: string;
  readonly userId: number;
}

/** Inserts users (as many as the specs reference) and the sessions, relative to the database clock. */
export async function insertSessions(pool: pg.Pool, specs: readonly SessionSpec[]): Promise<InsertedSession[]> {
  const userCount = Math.max(0, ...specs.map((s, i) => (s.user ?? i) + 1));
  const users = await pool.query<{ id: number }>(
    `INSERT INTO auth."user" (email) SELECT 'u-' || gen_random_uuid() || '@example.invalid' FROM generate_series(1, $1::int) RETURNING id`,
    [userCount],
  );
  const userIds = users.rows.map((r) => r.id);
  const { rows } = await pool.query<{ id: number; jti: string; user_id: number }>(
    `INSERT INTO auth.refresh_session (user_id, expires_at, last_used_at, created_at)
     SELECT u, now() + make_interval(secs => e), now() - make_interval(secs => i), now() - make_interval(secs => a)
       FROM unnest($1::int[], $2::float8[], $3::float8[], $4::float8[]) WITH ORDINALITY AS t(u, e, i, a, n)
      ORDER BY n
     RETURNING id, jti, user_id`,
    [specs.map((s, i) => userIds[s.user ?? i]), specs.map((s) => s.expiresIn), specs.map((s) => s.idleFor ?? 0), specs.map((s) => s.age ?? 86_400)],
  );
  return rows.map((r) => ({ id: r.id, jti: r.jti, userId: r.user_id }));
}

/** Inserts n sessions fast (generate_series), expired `expiredShare` of them; returns nothing. */
export async function insertBulkSessions(pool: pg.Pool, n: number, expiredShare: number): Promise<void> {
  await pool.query(`INSERT INTO auth."user" (email) SELECT 'bulk-' || g || '-' || gen_random_uuid() || '@example.invalid' FROM generate_series(1, 100) g`);
  await pool.query(
    `INSERT INTO auth.refresh_session (user_id, expires_at)
     SELECT (SELECT min(id) FROM auth."user") + (g % 100),
            CASE WHEN g <= $2::int THEN now() - make_interval(secs => 60 + g) ELSE now() + interval '30 days' END
       FROM generate_series(1, $1::int) g`,
    [n, Math.round(n * expiredShare)],
  );
}

export async function remainingIds(pool: pg.Pool): Promise<number[]> {
  const { rows } = await pool.query<{ id: number }>('SELECT id FROM auth.refresh_session ORDER BY id');
  return rows.map((r) => r.id);
}

/** Sessions still expired and still live, by the database's clock. */
/**
 * Every row deleted from the sessions table costs `seconds` more (a trigger that sleeps), so that
 * a statement of many rows outlasts a short statement_timeout; or, `per` 'statement', every delete
 * statement whatever its rows (a batch that lasts that long). Returns what undoes it.
 */
export async function slowDeletes(pool: pg.Pool, seconds: number, per: 'row' | 'statement' = 'row'): Promise<() => Promise<void>> {
  await pool.query('CREATE TABLE public.sj_test_delete_cost (seconds float8 NOT NULL)');
  await pool.query('INSERT INTO public.sj_test_delete_cost VALUES ($1)', [seconds]);
  await pool.query(
    'CREATE FUNCTION public.sj_test_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep((SELECT seconds FROM public.sj_test_delete_cost)); RETURN OLD; END $$',
  );
  await pool.query(
    `CREATE TRIGGER sj_test_slow_delete BEFORE DELETE ON auth.refresh_session FOR EACH ${per === 'row' ? 'ROW' : 'STATEMENT'} EXECUTE FUNCTION public.sj_test_slow_delete()`,
  );
  return async () => {
    await pool.query('DROP TRIGGER sj_test_slow_delete ON auth.refresh_session');
    await pool.query('DROP FUNCTION public.sj_test_slow_delete()');
    await pool.query('DROP TABLE public.sj_test_delete_cost');
  };
}

export async function expiredAndLive(pool: pg.Pool): Promise<{ expired: number; live: number }> {
  const { rows } = await pool.query<{ expired: number; live: number }>(
    `SELECT count(*) FILTER (WHERE expires_at < now())::int AS expired, count(*) FILTER (WHERE expires_at >= now())::int AS live FROM auth.refresh_session`,
  );
  return rows[0] ?? { expired: -1, live: -1 };
}

/**
 * A refresh in flight: a connection of its own that has updated the session's last_used_at and not
 * committed, so it holds the row's lock. The caller commits or rolls back, and ends the client.
 */
export async function refreshInFlight(url: string, sessionId: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('UPDATE auth.refresh_session SET last_used_at = now() WHERE id = $1', [sessionId]);
    return client;
  } catch (error) {
    await client.end();
    throw error;
  }
}

/**
 * The auth service refreshing a live session about every 5 ms, on a connection of its own, from now
 * (or, connected already, from when `begin` resolves) until the returned stop(), which waits for
 * the last refresh (and throws what failed one).
 */
export function startRefreshes(url: string, begin: Promise<void> = Promise.resolve()): () => Promise<void> {
  const auth = new pg.Client({ connectionString: url });
  let stopping = false;
  // stop() before `begin`: the loop ends without a refresh.
  let release = () => {};
  const stopped = new Promise<void>((resolve) => (release = resolve));
  const running = (async () => {
    await auth.connect();
    await Promise.race([begin, stopped]);
    while (!stopping) {
      await auth.query(
        `UPDATE auth.refresh_session SET refresh_version = refresh_version + 1 WHERE id = (SELECT max(id) FROM auth.refresh_session WHERE expires_at > now() + interval '1 hour' AND last_used_at > now() - interval '10 minutes')`,
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  // Rethrown by stop(): never an unhandled rejection before it.
  const outcome = running.then(
    () => null,
    (error: unknown) => ({ error }),
  );
  return async () => {
    stopping = true;
    release();
    const failed = await outcome;
    await auth.end();
    if (failed !== null) throw failed.error;
  };
}

/**
 * A row held in a way its xmax and the snapshot do not reveal: locked inside a savepoint (xmax is
 * the subtransaction's xid) or by two transactions at once (xmax is a MultiXactId). Returns the
 * holders: roll them back, then end them (releaseAll).
 */
export async function holdRow(url: string, sessionId: number, way: 'savepoint' | 'two-lockers'): Promise<pg.Client[]> {
  const lock = way === 'savepoint' ? 'FOR UPDATE' : 'FOR SHARE';
  const holders = Array.from({ length: way === 'savepoint' ? 1 : 2 }, () => new pg.Client({ connectionString: url }));
  try {
    for (const holder of holders) {
      await holder.connect();
      await holder.query('BEGIN');
      if (way === 'savepoint') await holder.query('SAVEPOINT s');
      await holder.query(`SELECT 1 FROM auth.refresh_session WHERE id = $1 ${lock}`, [sessionId]);
    }
    return holders;
  } catch (error) {
    await releaseAll(holders);
    throw error;
  }
}

/** Rolls back and ends every holder. */
export async function releaseAll(holders: readonly pg.Client[]): Promise<void> {
  for (const holder of holders) {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end().catch(() => undefined);
  }
}

/** The backend (pid) that waits for a lock the holder has, once one does. */
export async function blockedBy(pool: pg.Pool, holder: pg.Client, timeoutMs = 15_000): Promise<number> {
  const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))', [holderPid]);
    if (rows[0] !== undefined) return rows[0].pid;
    if (Date.now() > deadline) throw new Error(`no backend waited for ${holderPid}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
