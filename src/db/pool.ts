/**
 * The worker's own connection pool (pg-boss has a separate one). Every session of this pool carries
 * statement_timeout and lock_timeout as startup parameters, so each batch statement, run in
 * autocommit, is one short transaction with both limits set, at the cost of no extra round trip.
 * (This needs session-level settings: PgBouncer in transaction mode is not supported, as it is not
 * for pg-boss's LISTEN either.)
 */
import pg from 'pg';

export interface PoolOptions {
  readonly connectionString: string;
  readonly max: number;
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly applicationName?: string;
  readonly onError?: (error: Error) => void;
}

export function createPool(options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max,
    application_name: options.applicationName ?? 'session-janitor',
    statement_timeout: options.statementTimeoutMs,
    lock_timeout: options.lockTimeoutMs,
    // A batch never idles inside a transaction; a session that does is a bug or a hung client.
    idle_in_transaction_session_timeout: Math.max(options.statementTimeoutMs * 2, 10_000),
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle client that loses its connection (a database restart) emits 'error' on the pool;
  // unhandled, that would kill the process. The pool drops the client and opens a new one later.
  pool.on('error', (error) => options.onError?.(error));
  return pool;
}
