/**
 * JSON logs (pino) on stdout. The connection string is never logged: it is redacted wherever a
 * field of that name appears, and the code logs describeDatabase() instead.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.ts';

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
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
