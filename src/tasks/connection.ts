/**
 * A task's own pooled connection: checked out for the whole run (or job), with the task's session
 * settings (db/sql/session.ts), and always given back, reset, or closed.
 *
 * One rule after an error: the connection is closed, not returned. Whatever failed (a lock timeout
 * past its retries, a connection the server ended, an abort), a new connection costs milliseconds,
 * and a returned one would have to be proven sound (no transaction left open, our settings reset,
 * its socket alive) to be worth keeping. A reset that fails closes it too.
 */
import type pg from 'pg';
import { ASYNC_COMMIT, RESET_COMMIT } from '../db/sql/session.ts';
import type { TaskContext } from './context.ts';

/**
 * Runs fn on a connection of the pool (or on `client`, one the caller has just checked out), then
 * gives it back. The connection has an 'error' listener for as long as the task holds it: pg-pool
 * removes its own on checkout, and a connection the server ends (a restart, a failover,
 * pg_terminate_backend) emits 'error', which without a listener is an uncaught exception that
 * ends the process. With one, the statement in flight (or the next one) fails, the run or job
 * fails, and pg-boss retries it.
 */
export async function withConnection<T>(ctx: TaskContext, fn: (client: pg.PoolClient) => Promise<T>, client?: pg.PoolClient): Promise<T> {
  const connection = client ?? (await ctx.pool.connect());
  let lost: Error | undefined;
  const onError = (error: Error) => {
    lost ??= error;
    ctx.log.warn({ err: error }, 'a task lost its database connection');
  };
  connection.on('error', onError);
  const asyncCommit = ctx.config.asyncCommit;
  let failure: Error | true | undefined;
  try {
    if (asyncCommit) await connection.query(ASYNC_COMMIT);
    return await fn(connection);
  } catch (error) {
    failure = error instanceof Error ? error : true;
    throw error;
  } finally {
    if (failure === undefined && lost === undefined && asyncCommit)
      await connection.query(RESET_COMMIT).catch((error: unknown) => (failure = error instanceof Error ? error : true));
    const broken = failure ?? lost;
    // A connection going back to the pool gets the pool's idle listener again; a closed one keeps
    // ours, so an 'error' it emits while it ends is still handled.
    if (broken === undefined) connection.off('error', onError);
    connection.release(broken);
  }
}

/**
 * Runs fn on a connection borrowed from the pool for it alone (without the task's session
 * settings), and gives it back; one whose statement failed is closed (the rule above), unless
 * `sound` says the error leaves it usable. For a read on the side of a task's own connection.
 */
export async function borrowed<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>, sound: (error: unknown) => boolean = () => false): Promise<T> {
  const client = await pool.connect();
  const onError = () => {};
  client.on('error', onError);
  let broken: Error | undefined;
  try {
    return await fn(client);
  } catch (error) {
    if (!sound(error)) broken = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    if (broken === undefined) client.off('error', onError);
    client.release(broken);
  }
}

/** Whether pool.connect() would not wait: nobody waits, and a connection is idle or may be opened. */
export function spareConnection(pool: pg.Pool): boolean {
  return pool.waitingCount === 0 && (pool.idleCount > 0 || pool.totalCount < (pool.options.max ?? 10));
}
