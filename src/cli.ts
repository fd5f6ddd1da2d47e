#!/usr/bin/env node
/**
 * session-janitor <command>: the worker (`start`, the default) and the operator's commands of
 * ../shared/CONTRACT.md.
 *
 * Exit codes: 0 done, 1 a runtime failure (the database is unreachable, a query failed),
 * 78 (EX_CONFIG) a bad configuration value.
 */
import { Command } from 'commander';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { openDatabase } from './db/database.ts';
import { safeErrorMessage, sqlState } from './db/errors.ts';
import { createPool } from './db/pool.ts';
import { createBoss } from './boss.ts';
import { install } from './install.ts';
import { createLogger, type Logger } from './logger.ts';
import { startWorker } from './main.ts';
import { createMetrics } from './metrics.ts';
import { formatSeconds, progressReporter } from './progress.ts';
import type { TaskContext } from './tasks/context.ts';
import { countPurgeableSessions, purgeExpired } from './tasks/purge-expired.ts';

const EXIT_CONFIG = 78;

function fail(message: string, code: number): never {
  process.stderr.write(`session-janitor: ${message}\n`);
  process.exit(code);
}

function setup(): { config: Config; log: Logger } {
  try {
    const config = loadConfig(process.env);
    return { config, log: createLogger(config.logLevel) };
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, EXIT_CONFIG);
    throw error;
  }
}

/** Opens the database and a task context for a one-shot command, and closes both after fn. */
async function withTaskContext<T>(config: Config, log: Logger, fn: (ctx: TaskContext) => Promise<T>): Promise<T> {
  const database = await openDatabase(config, log);
  const pool = createPool({
    connectionString: database.connectionString,
    max: config.purgeConcurrency + 1,
    statementTimeoutMs: config.statementTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
  });
  try {
    return await fn({ pool, config, metrics: createMetrics(), log });
  } finally {
    await pool.end();
    await database.close();
  }
}

/** SIGTERM/SIGINT: the first is graceful, a second one forceful. */
function onSignals(graceful: () => Promise<void>, log: Logger): void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    received = true;
    log.info({ signal }, 'signal received: shutting down gracefully (send it again to force)');
    // pg-boss 12.38 closes its LISTEN client after removing that client's 'error' listener, so a
    // database that goes away during our shutdown (Ctrl-C also stops the embedded PostgreSQL, which
    // shares the terminal's process group) raises an unhandled 'error' event. While shutting down,
    // a lost connection is expected: log it and finish the shutdown.
    process.on('uncaughtException', (error) => {
      if (!isConnectionLoss(error)) {
        log.fatal({ err: { message: safeErrorMessage(error) } }, 'uncaught exception during shutdown');
        process.exit(1);
      }
      log.warn({ err: { message: safeErrorMessage(error) } }, 'database connection lost during shutdown');
    });
    graceful().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: { message: safeErrorMessage(error) } }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

function isConnectionLoss(error: unknown): boolean {
  const code = sqlState(error);
  return code === '57P01' || code === '57P02' || code === '57P03' || code === 'ECONNRESET' || code === 'EPIPE';
}

async function start(): Promise<void> {
  const { config, log } = setup();
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: { message: safeErrorMessage(reason) } }, 'unhandled rejection');
    process.exit(1);
  });
  const worker = await startWorker(config, log);
  onSignals(() => worker.stop(), log);
}

async function migrate(): Promise<void> {
  const { config, log } = setup();
  const database = await openDatabase(config, log);
  const pool = createPool({ connectionString: database.connectionString, max: 2, statementTimeoutMs: 0, lockTimeoutMs: 0 });
  const boss = createBoss(config, database.connectionString, { role: 'tool', migrate: true }, log);
  try {
    await boss.start();
    await install(boss, pool, config, log, true);
    log.info({ pgbossSchema: config.pgbossSchema }, 'migrate: pg-boss schema, session_janitor schema, queues and schedules are installed');
  } finally {
    await boss.stop({ graceful: false });
    await pool.end();
    await database.close();
  }
}

async function purgeNow(options: { dryRun?: boolean }): Promise<void> {
  const { config, log } = setup();
  await withTaskContext(config, log, async (ctx) => {
    if (options.dryRun) {
      const output = await purgeExpired(ctx, { dryRun: true });
      process.stdout.write(`dry run: ${output.wouldDelete ?? 0} sessions would be purged (expired before now() - ${config.expiredGraceSeconds}s)\n`);
      return;
    }
    const total = await countPurgeableSessions(ctx);
    const progress = progressReporter(log, total, 'purged');
    const controller = new AbortController();
    onSignals(async () => controller.abort(), log);
    const started = performance.now();
    const output = await purgeExpired(ctx, { signal: controller.signal, onProgress: (p) => progress.update(p) });
    progress.done();
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(
      `purged ${output.deleted} sessions in ${output.batches} batches, ${formatSeconds(seconds)} (${Math.round(output.deleted / Math.max(seconds, 0.001))} rows/s), stopped by: ${output.stoppedBy}\n`,
    );
  });
}

const program = new Command('session-janitor')
  .description('Purges expired and idle refresh-token sessions and carries out revocations (pg-boss worker).')
  .showHelpAfterError();

program.command('start', { isDefault: true }).description('run the worker: schedules, consumers, metrics server').action(start);
program.command('migrate').description('install or upgrade the pg-boss schema, the session_janitor schema, the queues and the schedules, then exit').action(migrate);
program
  .command('purge-expired')
  .description('purge expired sessions now, in the foreground, with progress')
  .option('--dry-run', 'count what would be purged; delete nothing')
  .action(purgeNow);

program.parseAsync(process.argv).catch((error: unknown) => fail(safeErrorMessage(error), 1));
