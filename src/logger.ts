/**
 * JSON logs (pino) on stdout. The connection string is never logged: it is redacted wherever a
 * field of that name appears, the code logs describeDatabase() instead, and every error passes
 * through serializeError, which redacts connection strings in its message and stack.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';
import { safeErrorMessage } from './db/errors.ts';

export type { Logger };

export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: 'session-janitor',
      level,
      base: { service: 'session-janitor' },
      redact: {
        paths: ['databaseUrl', 'connectionString', 'password', '*.databaseUrl', '*.connectionString', '*.password'],
        censor: '***',
      },
      serializers: { err: serializeError },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** What a log line says of an error. */
export interface LoggedError {
  readonly type: string;
  readonly message: string;
  /** SQLSTATE, or Node's code (ECONNREFUSED, ...). */
  readonly code?: string;
  /** pg-boss's error events name the queue and the worker of the failing loop. */
  readonly queue?: string;
  readonly worker?: string;
  readonly stack?: string;
  readonly cause?: LoggedError;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null;
const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/**
 * The `err` field of every log line, for anything thrown or emitted: an Error, or the plain object
 * that pg-boss 12 emits on 'error' (`{ ...error, message, stack, queue, worker }`: no prototype, so
 * `String(error)` is "[object Object]"). The message and the stack go through safeErrorMessage,
 * which replaces connection strings.
 */
export function serializeError(error: unknown, depth = 0): LoggedError {
  if (!isRecord(error)) return { type: typeof error, message: safeErrorMessage(String(error)) };
  const message = text(error.message) ?? '';
  const code = text(error.code);
  const stack = text(error.stack);
  const { queue, worker } = { queue: text(error.queue), worker: text(error.worker) };
  return {
    type: error instanceof Error ? error.constructor.name : (text(error.name) ?? 'Error'),
    message: safeErrorMessage(message),
    ...(code === undefined ? {} : { code }),
    ...(queue === undefined ? {} : { queue }),
    ...(worker === undefined ? {} : { worker }),
    ...(stack === undefined ? {} : { stack: safeErrorMessage(stack) }),
    ...(error.cause === undefined || depth >= 3 ? {} : { cause: serializeError(error.cause, depth + 1) }),
  };
}
