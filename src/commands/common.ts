/**
 * What every command of the CLI shares: reading the configuration (a bad value: one line and exit
 * 78), a task context on the database for one-shot commands, and signal handling. The worker logs
 * to stdout (a container's log); a one-shot command logs to stderr and prints its result on stdout,
 * so that `status --json | jq .` works.
 */
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { openDatabase } from '../db/database.ts';
import { connectionHint, safeErrorMessage, sqlState } from '../db/errors.ts';
import { noSessionTable, sessionTableExists } from '../db/dev-bootstrap.ts';
import type pg from 'pg';
import { createPool } from '../db/pool.ts';
import { createLogger, type Logger } from '../logger.ts';
import { createMetrics } from '../metrics.ts';
import { formatSeconds, progressReporter } from '../progress.ts';
import type { RunOptions, RunOutput } from '../tasks/batching.ts';
import type { TaskContext } from '../tasks/context.ts';

export const EXIT_CONFIG = 78;

export function fail(message: string, code: number): never {
  process.stderr.write(`session-janitor: ${message}\n`);
  process.exit(code);
}

export function setup(logs: 'stdout' | 'stderr' = 'stderr'): { config: Config; log: Logger } {
  try {
    const config = loadConfig(process.env);
    return { config, log: createLogger(config.logLevel, logs === 'stderr' ? pino.destination({ fd: 2, sync: true }) : undefined) };
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, EXIT_CONFIG);
    throw error;
  }
}

/**
 * The first query of a one-shot command: fails with the real cause when the database does not
 * answer, refuses the login, or is not the auth database.
 */
export async function requireSessionTable(pool: pg.Pool, config: Config, connectionString: string): Promise<void> {
  let present: boolean;
  try {
    present = await sessionTableExists(pool, config.sessionTable);
  } catch (error) {
    throw new Error(connectionHint(error, connectionString) ?? safeErrorMessage(error));
  }
  if (!present) throw new Error(noSessionTable(config.sessionTable, connectionString));
}

/** Opens the database and a task context for a one-shot command, and closes both after fn. */
export async function withTaskContext<T>(
  config: Config,
  log: Logger,
  fn: (ctx: TaskContext, connectionString: string) => Promise<T>,
): Promise<T> {
  const database = await openDatabase(config, log);
  const pool = createPool({
    connectionString: database.connectionString,
    max: config.purgeConcurrency + 1,
    statementTimeoutMs: config.statementTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
  });
  try {
    await requireSessionTable(pool, config, database.connectionString);
    return await fn({ pool, config, metrics: createMetrics(), log }, database.connectionString);
  } finally {
    await pool.end();
    await database.close();
  }
}

/**
 * One run of a task in the foreground: progress on stderr (against total, when known), Ctrl-C
 * finishes the batch in flight, then one summary line on stdout ("purged 12 sessions in ...").
 */
export async function runInForeground(
  log: Logger,
  total: number | null,
  what: { readonly verb: string; readonly noun: string },
  run: (options: RunOptions) => Promise<RunOutput>,
): Promise<RunOutput> {
  const progress = progressReporter(log, total, what.verb);
  const controller = new AbortController();
  onSignals(async () => controller.abort(), log, false);
  const started = performance.now();
  const output = await run({ signal: controller.signal, onProgress: (p) => progress.update(p) });
  progress.done();
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${what.verb} ${output.deleted} ${what.noun} in ${output.batches} batches, ${formatSeconds(seconds)} (${Math.round(output.deleted / Math.max(seconds, 0.001))} rows/s), stopped by: ${output.stoppedBy}\n`,
  );
  return output;
}

function isConnectionLoss(error: unknown): boolean {
  const code = sqlState(error);
  return code === '57P01' || code === '57P02' || code === '57P03' || code === 'ECONNRESET' || code === 'EPIPE';
}

/** SIGTERM/SIGINT: the first is graceful (then exit 0), a second one forceful (exit 1). */
export function onSignals(graceful: () => Promise<void>, log: Logger, exitAfter = true): void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    received = true;
    log.info({ signal }, 'signal received: shutting down gracefully (send it again to force)');
    // pg-boss 12.38 closes its LISTEN client after removing that client's 'error' listener, so a
    // database that goes away during our shutdown (a server stopped by another process, say)
    // raises an unhandled 'error' event. While shutting down, a lost connection is expected: log it
    // and finish the shutdown.
    process.on('uncaughtException', (error) => {
      if (!isConnectionLoss(error)) {
        log.fatal({ err: { message: safeErrorMessage(error) } }, 'uncaught exception during shutdown');
        process.exit(1);
      }
      log.warn({ err: { message: safeErrorMessage(error) } }, 'database connection lost during shutdown');
    });
    graceful().then(
      () => exitAfter && process.exit(0),
      (error: unknown) => {
        log.error({ err: { message: safeErrorMessage(error) } }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
