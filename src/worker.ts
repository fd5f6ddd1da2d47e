/**
 * The worker: opens the database, starts pg-boss, installs what is missing, registers the consumers
 * and serves /metrics, /healthz and /readyz. Every resource it acquires pushes a releaser; stop()
 * runs them last-in first-out, so pg-boss drains its running jobs before the HTTP server, the pool
 * and the database go away.
 */
import cron from 'node-cron';
import { createBoss } from './boss.ts';
import { startGaugeRefresh } from './gauges.ts';
import type { Config } from './config.ts';
import { consumeRevocationsUnlessPaused } from './consumers/revoke-pause.ts';
import { registerScheduledConsumers } from './consumers/scheduled.ts';
import { openDatabase } from './db/database.ts';
import { sessionTableAccess, sessionTableExists, sessionTableProblem } from './db/dev-bootstrap.ts';
import { purgeTablesProblems } from './db/purge-tables.ts';
import { connectionHint, isConnectionError, safeErrorMessage } from './db/errors.ts';
import { createPool } from './db/pool.ts';
import { close, createHttpServer, listen } from './http.ts';
import { install } from './install.ts';
import type { Logger } from './logger.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { OutageLog } from './outage-log.ts';
import { QUEUES } from './queues.ts';
import { ClockCheck } from './tasks/clock-check.ts';
import type { TaskContext } from './tasks/context.ts';
import { poolSize } from './tasks/pool-size.ts';

export interface Worker {
  readonly metrics: Metrics;
  readonly metricsPort: number;
  /** Graceful: stops taking jobs, lets the running batch finish, releases everything. */
  stop(): Promise<void>;
}

/**
 * How often the readiness ping runs, and how old its last success may be for /readyz to say 200
 * (a ping that hangs counts as failed once it is that old). The last ping failing is 503 at once.
 */
const PING_CRON = '*/5 * * * * *';
const PING_FRESH_MS = 15_000;

export type Releaser = { readonly name: string; readonly release: () => Promise<void> };

/**
 * Runs every releaser, last acquired first, and then throws the first error (as graphile-worker's
 * releasers do): a shutdown that left something behind must not look like a clean stop.
 */
export async function releaseInReverse(releasers: Releaser[], log: Logger): Promise<void> {
  const errors: unknown[] = [];
  for (let r = releasers.pop(); r !== undefined; r = releasers.pop()) {
    try {
      await r.release();
    } catch (error) {
      log.error({ err: error, releaser: r.name }, 'error while shutting down');
      errors.push(error);
    }
  }
  if (errors.length > 0) throw errors[0];
}

export async function startWorker(config: Config, log: Logger): Promise<Worker> {
  const releasers: Releaser[] = [];
  const metrics = createMetrics(config);
  const outage = new OutageLog(log);
  const shutdown = new AbortController();
  let bossStarted = false;
  let lastPingOk = 0;
  let lastPingFailed = false;
  let lastPingError: unknown;
  /** Why the sessions table cannot be used (absent: not the auth database; privileges missing), as of the last ping. */
  let unusable: string | null = null;
  /** Why extra tables of JANITOR_PURGE_TABLES cannot be used, one line each, as of the last ping: not ready, naming them. */
  let unusableTables: readonly string[] = [];
  let scraped = false;

  const releaseAll = () => releaseInReverse(releasers, log);

  try {
    const database = await openDatabase(config, log);
    releasers.push({ name: 'database', release: () => database.close() });

    // The lanes of every scheduled task, a connection per concurrent revocation, the latency guard's
    // probe, and two for gauges and pings: tasks/scheduled.ts.
    const pool = createPool({
      connectionString: database.connectionString,
      max: poolSize(config, { tasks: 'all', revocations: config.revokeConcurrency, own: 2 }),
      statementTimeoutMs: config.statementTimeoutMs,
      lockTimeoutMs: config.lockTimeoutMs,
      onError: (error) => {
        metrics.errors.inc({ kind: 'database' });
        if (isConnectionError(error)) outage.failed(error, 'pool');
        else log.warn({ err: error }, 'idle database connection lost');
      },
    });
    releasers.push({ name: 'pool', release: () => pool.end() });

    const server = createHttpServer(
      metrics.registry,
      {
        notReady: () => {
          if (shutdown.signal.aborted) return 'shutting down';
          if (lastPingFailed) return `the database does not answer: ${safeErrorMessage(lastPingError)}`;
          if (unusable !== null) return unusable;
          if (unusableTables.length > 0) return unusableTables.join('; ');
          if (!bossStarted) return 'starting';
          if (Date.now() - lastPingOk >= PING_FRESH_MS) return `no database ping succeeded in ${PING_FRESH_MS / 1000} s`;
          return null;
        },
      },
      () => (scraped = true),
    );
    const metricsPort = await listen(server, config.metricsPort, config.metricsHost).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EACCES') throw error;
      throw new Error(
        `port ${config.metricsPort} is ${code === 'EADDRINUSE' ? 'in use' : 'not allowed'} (${code}): set JANITOR_METRICS_PORT to a free port (each worker of a machine needs its own)`,
      );
    });
    releasers.push({ name: 'http', release: () => close(server) });
    log.info({ port: metricsPort }, `metrics at http://localhost:${metricsPort}/metrics (also /healthz, /readyz)`);

    // The ping also looks for the sessions table: a worker on a database without it (not the auth
    // database) would run, and delete nothing, forever. It says so once, and again when it changes.
    // At start, a failed ping is the start-up error itself (one line, by cli.ts): no warning with
    // its stack after that line, which would leave the terminal's last line not the cause.
    const ping = async (atStart = false) => {
      try {
        const access = await sessionTableAccess(pool, config.sessionTable);
        lastPingOk = Date.now();
        lastPingFailed = false;
        outage.recovered();
        const missing = sessionTableProblem(access, config.sessionTable, database.connectionString);
        metrics.databaseUp.set(missing === null ? 1 : 0);
        if (missing !== null && missing !== unusable) log.error(`${missing}; not ready until then (checked every 5 s)`);
        if (missing === null && unusable !== null) log.info(`${config.sessionTable.schema}.${config.sessionTable.name} is usable: ready`);
        unusable = missing;
        // The extra tables: each problem logged once (and again when it changes), each table's runs
        // fail with the same line meanwhile (tasks/purge-expired.ts purgeTable), the others go on.
        const tables = await purgeTablesProblems(pool, config);
        for (const line of tables) if (!unusableTables.includes(line)) log.error(`${line}; not ready until then (checked every 5 s)`);
        if (tables.length === 0 && unusableTables.length > 0) log.info('every table of JANITOR_PURGE_TABLES is usable: ready');
        unusableTables = tables;
      } catch (error) {
        lastPingFailed = true;
        lastPingError = error;
        metrics.databaseUp.set(0);
        metrics.errors.inc({ kind: 'database' });
        if (isConnectionError(error) && lastPingOk !== 0) outage.failed(error, 'ping');
        else if (!atStart) log.warn({ err: error }, 'database ping failed');
      }
    };
    await ping(true);
    if (lastPingOk === 0) {
      throw new Error(connectionHint(lastPingError, database.connectionString) ?? `the database does not answer: ${safeErrorMessage(lastPingError)}`);
    }
    const pinger = cron.schedule(PING_CRON, () => ping(), { name: 'readiness-ping', noOverlap: true });
    releasers.push({ name: 'ping', release: async () => void (await pinger.destroy()) });

    // Never install pg-boss or the worker's schema into a database without the sessions table (not
    // the auth database?), as `migrate` refuses to: the worker may still run there, not ready, when
    // everything is installed already (the table may come with the auth service's next migration).
    const tableAbsent = unusable !== null && !(await sessionTableExists(pool, config.sessionTable));
    const migrate = config.migrateOnStart && !tableAbsent;
    const boss = createBoss(config, database.connectionString, { role: 'worker', migrate, outage }, log, metrics);
    releasers.push({
      name: 'pg-boss',
      // stop() waits for running handlers, which see the shutdown signal and end after their batch;
      // before boss has started (install() refused the schemas) it does nothing.
      release: () => boss.stop({ graceful: true, timeout: config.shutdownTimeoutMs }),
    });
    try {
      await install(boss, pool, config, log, migrate);
    } catch (error) {
      // A failed start leaves pg-boss's own pool open, whose idle connections would hold the process
      // for their idle timeout (10 s) after the cause is known.
      await boss.stop({ graceful: false }).catch(() => undefined);
      // Without the sessions table nothing was installed: say why (not the auth database?), as `migrate` does.
      if (tableAbsent) throw new Error(unusable ?? safeErrorMessage(error), { cause: error });
      throw error;
    }

    // The clocks at start (before any run), then at each gauge refresh (tasks/clock-check.ts).
    const clock = new ClockCheck(config.clockSkewToleranceSeconds, log, metrics);
    await clock.measure(pool);
    const ctx: TaskContext = { pool, config, metrics, log, clock };
    await registerScheduledConsumers(boss, ctx, shutdown.signal, log);
    const stopFollowingPause = await consumeRevocationsUnlessPaused(boss, ctx, shutdown.signal, log);
    // Stopped before pg-boss is (releasers run last first): no consumer starts again during its stop.
    releasers.push({ name: 'revocation pause', release: stopFollowingPause });
    bossStarted = true;
    const stopGauges = await startGaugeRefresh(
      { pool, boss, config, metrics, clock, noSessionTable: () => unusable !== null, scraped: () => scraped, outage },
      log,
    );
    releasers.push({ name: 'gauges', release: stopGauges });

    if (database.demo !== null) {
      await boss.send(QUEUES.purgeExpired, {});
      log.info(`demo: sent one ${QUEUES.purgeExpired} job now; the schedule (${config.purgeCron}) sends the next ones`);
    }
    log.info({ purgeCron: config.purgeCron, tz: config.cronTz, pgbossSchema: config.pgbossSchema }, 'session-janitor worker started');

    let stopping: Promise<void> | null = null;
    return {
      metrics,
      metricsPort,
      stop: () => {
        stopping ??= (async () => {
          log.info('shutting down: finishing the batch in flight');
          shutdown.abort();
          await releaseAll();
          log.info('stopped');
        })();
        return stopping;
      },
    };
  } catch (error) {
    shutdown.abort();
    // Each releaser's error is logged; the start-up error is the one to report.
    await releaseAll().catch(() => undefined);
    throw error;
  }
}
