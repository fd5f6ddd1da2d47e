/**
 * JSON logs (pino) on stdout. The connection string is never logged: it is redacted wherever a
 * field of that name appears, the code logs describeDatabase() instead, and every error passes
 * through serializeError, which redacts connection strings in its message and stack.
 *
 * JANITOR_LOG_FORMAT picks the shape of a line: pino's own, ECS (@elastic/ecs-pino-format, Elastic's
 * formatter) or Google Cloud Logging (@google-cloud/pino-logging-gcp-config, Google's). Both
 * formatters see errors already redacted. Google's package loads the Cloud Logging client, so it
 * is loaded only when that format is chosen.
 */
import { createRequire } from 'node:module';
import { ecsFormat } from '@elastic/ecs-pino-format';
import { pino, type Logger } from 'pino';
import type { LogFormat, LogLevel } from './config.ts';
import { safeErrorMessage } from './db/errors.ts';

export type { Logger };

export interface LoggerOptions {
  readonly format?: LogFormat;
  /** Fields added to every line (the active trace's ids: tracing.ts). */
  readonly mixin?: () => object;
}

const require = createRequire(import.meta.url);

export function createLogger(level: LogLevel, destination?: pino.DestinationStream, options: LoggerOptions = {}): Logger {
  const common: pino.LoggerOptions = {
    name: 'session-janitor',
    level,
    base: { service: 'session-janitor' },
    redact: {
      paths: ['databaseUrl', 'connectionString', 'password', '*.databaseUrl', '*.connectionString', '*.password'],
      censor: '***',
    },
    serializers: { err: serializeError },
    ...(options.mixin === undefined ? {} : { mixin: options.mixin }),
  };
  return pino({ ...common, ...formatOptions(options.format ?? 'pino') }, destination);
}

function formatOptions(format: LogFormat): pino.LoggerOptions {
  switch (format) {
    case 'pino':
      return { formatters: { level: (label) => ({ level: label }) }, timestamp: pino.stdTimeFunctions.isoTime };
    case 'ecs': {
      // ECS's own error fields, from the redacted error (its formatter would read the raw one).
      const ecs = ecsFormat({ convertErr: false, convertReqRes: false, apmIntegration: false, serviceName: 'session-janitor' });
      const ecsLog = ecs.formatters?.log ?? ((object: Record<string, unknown>) => object);
      return {
        ...ecs,
        // ECS's service is an object (service.name, set by the formatter): a string there would clash.
        base: {},
        formatters: {
          ...ecs.formatters,
          log: (object) => {
            const { err, trace_id, span_id, trace_flags: _flags, ...rest } = object;
            const out = ecsLog(rest);
            if (typeof trace_id === 'string') out['trace.id'] = trace_id;
            if (typeof span_id === 'string') out['span.id'] = span_id;
            if (err === undefined) return out;
            const error = serializeError(err);
            return {
              ...out,
              error: {
                type: error.type,
                message: error.message,
                ...(error.code === undefined ? {} : { code: error.code }),
                ...(error.stack === undefined ? {} : { stack_trace: error.stack }),
              },
            };
          },
        },
      };
    }
    case 'gcp': {
      const { createGcpLoggingPinoConfig } = require('@google-cloud/pino-logging-gcp-config') as typeof import('@google-cloud/pino-logging-gcp-config');
      // Its stack_trace (for Error Reporting) comes from the error it is given: a redacted copy.
      return createGcpLoggingPinoConfig(
        { serviceContext: { service: 'session-janitor' }, inihibitDiagnosticMessage: true },
        { formatters: { log: (object) => (object.err instanceof Error ? { ...object, err: redactedCopy(object.err) } : object) } },
      );
    }
  }
}

/** The error with its message and stack redacted, same prototype (type) and own fields. */
function redactedCopy(error: Error): Error {
  const copy = Object.assign(Object.create(Object.getPrototypeOf(error) as object) as Error, error);
  copy.message = safeErrorMessage(error.message);
  if (error.stack !== undefined) copy.stack = safeErrorMessage(error.stack);
  return copy;
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
