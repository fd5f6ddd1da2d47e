/**
 * PostgreSQL errors the tasks react to, by SQLSTATE, and a message for humans that can never carry
 * the connection string's password.
 */
import { redactMessage } from './connection-string.ts';

export const SQLSTATE = {
  queryCanceled: '57014', // statement_timeout
  lockNotAvailable: '55P03', // lock_timeout
  deadlockDetected: '40P01',
  undefinedTable: '42P01',
  insufficientPrivilege: '42501',
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
