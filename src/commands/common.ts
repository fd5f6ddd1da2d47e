/**
 * What every command of the CLI shares: reading the configuration (a bad value: one line and exit
 * 78) and a task context on the database for one-shot commands. The worker logs
 * to stdout (a container's log); a one-shot command logs to stderr and prints its result on stdout,
 * so that `status --json | jq .` works.
 */
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import { openDatabase } from '../db/database.ts';
import { SQLSTATE, connectionHint, safeErrorMessage, sqlState } from '../db/errors.ts';
import { databaseTarget } from '../db/connection-string.ts';
import { sessionTableAccess, sessionTableProblem, type SessionTableAccess } from '../db/dev-bootstrap.ts';
import type pg from 'pg';
import { createPool } from '../db/pool.ts';
import { assertSchemasCompatible } from '../db/compatibility.ts';
import { createLogger, type Logger } from '../logger.ts';
import { traceFields } from '../tracing.ts';
import { buildInfo, describeBuild } from '../build-info.ts';
import { createMetrics } from '../metrics.ts';
import { ManualRunRecord } from './manual-run-record.ts';
import { formatSeconds, progressReporter } from './progress.ts';
import { fail, onProcessEvents } from './process-edge.ts';
import type { RunOptions, RunOutput } from '../tasks/batching.ts';
import { ClockCheck } from '../tasks/clock-check.ts';
import type { TaskContext } from '../tasks/context.ts';
import { poolSize } from '../tasks/pool-size.ts';
import type { QueueName } from '../queues.ts';

export const EXIT_CONFIG = 78;

/**
 * Reads the configuration and opens the log, whose first line names the release (version and git
 * revision, as `--version` and session_janitor_build_info do).
 */
export function setup(logs: 'stdout' | 'stderr' = 'stderr'): { config: Config; log: Logger } {
  try {
    const config = loadConfig(process.env);
    const destination = logs === 'stderr' ? pino.destination({ fd: 2, sync: true }) : undefined;
    const mixin = config.tracing.enabled ? traceFields : undefined;
    const log = createLogger(config.logLevel, destination, { format: config.logFormat, ...(mixin === undefined ? {} : { mixin }) });
    const build = buildInfo();
    log.info({ version: build.version, revision: build.revision, pgbossVersion: build.pgbossVersion, nodeVersion: build.nodeVersion }, describeBuild(build));
    return { config, log };
  } catch (error) {
    if (error instanceof ConfigError) fail(`configuration error: ${error.message}`, EXIT_CONFIG);
    throw error;
  }
}

/**
 * The first query of a one-shot command: fails with the real cause when the database does not
 * answer, refuses the login, or is not the auth database, and, for a command that deletes, when the
 * role lacks SELECT or DELETE on the table (the worker's readiness check says the same).
 * `migrate` runs as the migrator, which needs neither: it asks only that the table exists.
 */
export async function requireSessionTable(pool: pg.Pool, config: Config, connectionString: string, needs: 'presence' | 'select-and-delete'): Promise<void> {
  let access: SessionTableAccess;
  try {
    access = await sessionTableAccess(pool, config.sessionTable);
  } catch (error) {
    if (sqlState(error) === SQLSTATE.insufficientPrivilege) {
      const user = databaseTarget(connectionString)?.user || 'the connecting role';
      throw new Error(
        `${user} may not look up ${config.sessionTable.schema}.${config.sessionTable.name} (${safeErrorMessage(error)}): this command needs the worker's grants, the role session_janitor_worker of sql/roles.sql`,
        { cause: error },
      );
    }
    throw new Error(connectionHint(error, connectionString) ?? safeErrorMessage(error), { cause: error });
  }
  if (needs === 'presence') access = { ...access, missingPrivileges: [] };
  const problem = sessionTableProblem(access, config.sessionTable, connectionString);
  if (problem !== null) throw new Error(problem);
}

/**
 * Opens the database and a task context for a one-shot command, and closes both after fn. Before
 * fn, the schemas are checked as the worker's are (db/compatibility.ts): a command of an older
 * release must not run against a breaking migration of a newer one, nor a newer one before `migrate`.
 */
export async function withTaskContext<T>(
  config: Config,
  log: Logger,
  fn: (ctx: TaskContext, connectionString: string) => Promise<T>,
  needs: 'presence' | 'select-and-delete' = 'select-and-delete',
): Promise<T> {
  const database = await openDatabase(config, log);
  const pool = createPool({
    connectionString: database.connectionString,
    // One task's lanes, the latency guard's probe, one for the command's own statements: tasks/scheduled.ts.
    max: poolSize(config, { tasks: 'one', revocations: 0, own: 1 }),
    statementTimeoutMs: config.statementTimeoutMs,
    lockTimeoutMs: config.lockTimeoutMs,
  });
  try {
    await requireSessionTable(pool, config, database.connectionString, needs);
    await assertSchemasCompatible(pool, config, log, 'command');
    const metrics = createMetrics(config);
    // A one-shot command checks the clocks once, at its start (tasks/clock-check.ts).
    const clock = new ClockCheck(config.clockSkewToleranceSeconds, log, metrics);
    await clock.measure(pool);
    return await fn({ pool, config, metrics, log, clock }, database.connectionString);
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
  onBatch?: RunOptions['onBatch'],
): Promise<{ output: RunOutput; seconds: number }> {
  const progress = progressReporter(log, total, what.verb);
  const controller = new AbortController();
  const unsubscribe = onProcessEvents(async () => controller.abort(), log, false);
  const started = performance.now();
  const output = await run({ signal: controller.signal, onProgress: (p) => progress.update(p), ...(onBatch === undefined ? {} : { onBatch }) }).finally(
    unsubscribe,
  );
  progress.done();
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${what.verb} ${output.deleted} ${what.noun} in ${output.batches} batches, ${formatSeconds(seconds)} (${Math.round(output.deleted / Math.max(seconds, 0.001))} rows/s), stopped by: ${output.stoppedBy}\n`,
  );
  return { output, seconds };
}

/**
 * A manual run of a scheduled task, in the foreground, recorded in its queue's job history as it
 * goes (commands/manual-run-record.ts): the last-success time moves when it completes, `status`
 * shows it, and a worker adds its rows to session_janitor_sessions_deleted_total, those of a run
 * that failed or was killed included.
 */
export async function runManually(
  ctx: TaskContext,
  queue: QueueName,
  total: number | null,
  what: { readonly verb: string; readonly noun: string },
  run: (options: RunOptions) => Promise<RunOutput>,
): Promise<{ output: RunOutput; seconds: number }> {
  const record = await ManualRunRecord.start(ctx, queue);
  let result: { output: RunOutput; seconds: number };
  try {
    result = await runInForeground(ctx.log, total, what, run, (batch) => record?.batch(batch.rows));
  } catch (error) {
    await record?.finish({ error });
    throw error;
  }
  await record?.finish({ output: result.output });
  return result;
}
