/**
 * PostgreSQL errors the tasks react to, by SQLSTATE, and a message for humans that can never carry
 * the connection string's password.
 */
import { userInfo } from 'node:os';
import { databaseTarget, redactMessage } from './connection-string.ts';

export const SQLSTATE = {
  queryCanceled: '57014', // statement_timeout
  lockNotAvailable: '55P03', // lock_timeout
  deadlockDetected: '40P01',
  undefinedTable: '42P01',
  insufficientPrivilege: '42501',
  invalidParameterValue: '22023',
  programLimitExceeded: '54000',
} as const;

export function sqlState(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}

/** The error's message with every password masked (db/connection-string.ts), safe to log and to store in job output. */
export function safeErrorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = sqlState(error);
  const text = redactMessage(message);
  return code !== undefined && /^[0-9A-Z]{5}$/.test(code) ? `${text} (SQLSTATE ${code})` : text;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET']);

/** pg's own words when a connection drops or cannot be had (it sets no code on these). */
const CONNECTION_LOST = /Connection terminated|connection error|timeout exceeded when trying to connect|Connection ended unexpectedly|Client was closed/i;

/**
 * Whether an error means the database could not be reached or the connection was lost: a network
 * error, PostgreSQL's class 08 (connection exception) or 57P01-57P03 (shut down, restarting), or
 * pg's "Connection terminated". The same outage, whichever loop or query met it.
 */
export function isConnectionError(error: unknown): boolean {
  const first = error instanceof AggregateError && error.errors.length > 0 ? (error.errors[0] as unknown) : error;
  const code = sqlState(first);
  if (code !== undefined && (UNREACHABLE.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code))) return true;
  const message = typeof first === 'object' && first !== null && 'message' in first && typeof first.message === 'string' ? first.message : String(first);
  return CONNECTION_LOST.test(message);
}

/**
 * The cause of a failure to reach or log in to the database, in words that name the host and port,
 * the user or the database of the connection string (never its password); undefined for any other
 * error. pg reports a host name with several addresses (localhost) as an AggregateError.
 */
export function connectionHint(error: unknown, connectionString: string): string | undefined {
  const first = error instanceof AggregateError && error.errors.length > 0 ? (error.errors[0] as unknown) : error;
  const code = sqlState(first);
  const target = databaseTarget(connectionString);
  if (target === null) return undefined;
  const where = target.socket ? `the socket ${target.host}/.s.PGSQL.${target.port}` : `${target.host}:${target.port}`;
  // node-pg's own default when the URL names no user: the operating system's user.
  const user = target.user || `${userInfo().username} (the default: DATABASE_URL names no user)`;
  const database = target.database || target.user;
  if (code !== undefined && (UNREACHABLE.has(code) || (target.socket && code === 'ENOENT'))) {
    return `the database at ${where} does not answer (${code}): is it running, and are DATABASE_URL's host and port right?`;
  }
  if (code === '28P01' || code === '28000') {
    return `authentication failed for user ${user} at ${where} (SQLSTATE ${code}): check DATABASE_URL's user and password`;
  }
  if (code === '3D000') return `database ${database} does not exist at ${where} (SQLSTATE 3D000): check DATABASE_URL's database name`;
  const message = first instanceof Error ? first.message : '';
  if (/does not support SSL connections/.test(message)) {
    return `the database at ${where} does not support SSL connections, which DATABASE_URL's sslmode asks for: enable SSL on the server, or set sslmode=disable`;
  }
  return undefined;
}
