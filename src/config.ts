/**
 * The worker's configuration: every environment variable is read here, once, validated, and turned
 * into a typed, frozen object. Nothing else in the code base reads process.env.
 *
 * A bad value stops the process with one line that names the variable, the (redacted) value and
 * what is allowed: see ConfigError.
 */
import ms from 'ms';
import cron from 'node-cron';
import { PgBoss } from 'pg-boss';
import { z } from 'zod';
import { fromSource } from './command-line.ts';
import { isPostgresUrl, redactConnectionString, withLibpqSslMode } from './db/connection-string.ts';

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, shownValue: string, allowed: string) {
    super(`${variable}=${shownValue} is invalid: ${allowed}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * The shape of a log line: pino's own (level, time, msg: what Loki, Vector and Datadog read as is),
 * Elastic Common Schema (@timestamp, log.level, message) or Google Cloud Logging's structured
 * logging (severity, message, timestamp): JANITOR_LOG_FORMAT.
 */
export const LOG_FORMATS = ['pino', 'ecs', 'gcp'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface QualifiedName {
  readonly schema: string;
  readonly name: string;
}

/** `schema.table`, as the configuration writes it: the `table` label of the metrics. */
export const tableLabel = (table: QualifiedName): string => `${table.schema}.${table.name}`;

/**
 * A table the purge cleans besides the sessions table (JANITOR_PURGE_TABLES): its rows go once
 * `expiryColumn < now() - grace`, on the purge's schedule, as the sessions table's do.
 */
export interface PurgeTable {
  readonly table: QualifiedName;
  readonly expiryColumn: string;
  readonly graceSeconds: number;
  /** `schema.table`: the metrics' table label, `purge-expired --table`, the status and the logs. */
  readonly label: string;
  /** The entry as configured, for the one line of a mistake. */
  readonly entry: string;
}

export interface Config {
  /** undefined: the embedded development PostgreSQL under dataDir. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly pgbossSchema: string;
  readonly sessionTable: QualifiedName;
  /** The extra tables of JANITOR_PURGE_TABLES, in the order given (none: the sessions table only). */
  readonly purgeTables: readonly PurgeTable[];
  readonly purgeCron: string;
  readonly reapCron: string;
  readonly cronTz: string;
  readonly expiredGraceSeconds: number;
  /** null: reaping is off. */
  readonly idleTimeoutSeconds: number | null;
  readonly batchSize: number;
  readonly batchMinSize: number;
  readonly batchMaxSize: number;
  readonly batchTargetMs: number;
  /** The purge's batches take at most min(batchMaxSize, this) rows. */
  readonly purgeBatchMaxSize: number;
  readonly purgeConcurrency: number;
  /**
   * The purge, the idle reaper and revocations commit asynchronously (synchronous_commit off on
   * their own connections, for their own transactions only).
   */
  readonly asyncCommit: boolean;
  /** Throttle (tasks/throttle.ts): percent of each lane's wall time spent in batches; 100: off. */
  readonly purgeDutyCyclePercent: number;
  /** Throttle: null is off. */
  readonly purgeMaxWalBytesPerSecond: number | null;
  /** Throttle: null is off. */
  readonly purgeMaxReplicaLagSeconds: number | null;
  readonly purgePauseOnVacuum: boolean;
  /**
   * The latency guard (tasks/latency-guard.ts) of the purge and the reaper: they hold back while a
   * commit takes more than this factor of its baseline. null: off.
   */
  readonly latencyGuardFactor: number | null;
  /** The least share of full speed the latency guard holds a run to (tasks/latency-guard.ts, MIN_SCALE by default). */
  readonly latencyGuardMinSpeed: number;
  /**
   * The freshness objective (tasks/freshness.ts): while the oldest row a purge has left has waited
   * longer than this past its expiry (and grace), the latency guard does not hold the purge back. null: off.
   */
  readonly purgeFreshnessObjectiveSeconds: number | null;
  /** Seconds the database's clock and the process's may differ before the purge and the reaper hold (tasks/clock-check.ts); null: no check. */
  readonly clockSkewToleranceSeconds: number | null;
  /** The blast-radius guard (tasks/blast-guard.ts): the fraction of the table's rows a run may delete retroactively; null: off. */
  readonly blastRadius: number | null;
  readonly maxRunSeconds: number;
  /** null: no row budget. */
  readonly maxRunRows: number | null;
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly revokeConcurrency: number;
  readonly metricsPort: number;
  readonly metricsHost: string;
  readonly gaugeRefreshCron: string;
  readonly backlogCountCap: number;
  readonly shutdownTimeoutMs: number;
  readonly heartbeatSeconds: number;
  readonly retryDelaySeconds: number;
  /** How long transient failures are retried before a job is dead-lettered (queues.ts). */
  readonly retryWindowSeconds: number;
  readonly superviseIntervalSeconds: number;
  /** How often pg-boss evaluates the schedules (its cron pass), in seconds. */
  readonly scheduleCheckSeconds: number;
  readonly migrateOnStart: boolean;
  readonly demoData: boolean;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  /** OpenTelemetry tracing, on when the standard OTEL_* variables say where spans go (tracingFromEnv). */
  readonly tracing: Tracing;
}

export interface Tracing {
  readonly enabled: boolean;
  /** OTEL_TRACES_EXPORTER's choice: OTLP over HTTP (the endpoint from OTEL_EXPORTER_OTLP_*), or the console. */
  readonly exporter: 'otlp' | 'console';
}

/**
 * Tracing from the OpenTelemetry SDK's standard variables, so that it costs nothing until a user
 * points it somewhere: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
 * set or OTEL_TRACES_EXPORTER names otlp or console; off with OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. The exporter reads its own OTEL_EXPORTER_OTLP_* settings (endpoint,
 * headers, timeout) as the specification says.
 */
export function tracingFromEnv(env: NodeJS.ProcessEnv): Tracing {
  const set = (name: string) => (env[name] ?? '').trim() !== '';
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
  const disabled = (env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true' || exporters.includes('none');
  for (const name of exporters) {
    if (!['otlp', 'console', 'none'].includes(name))
      throw new ConfigError('OTEL_TRACES_EXPORTER', env.OTEL_TRACES_EXPORTER ?? '', 'otlp, console or none (this worker exports no other)');
  }
  const wanted = exporters.length > 0 || set('OTEL_EXPORTER_OTLP_ENDPOINT') || set('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  return { enabled: !disabled && wanted, exporter: exporters.length === 1 && exporters[0] === 'console' ? 'console' : 'otlp' };
}

/** Seconds from a duration such as `90s`, `15m`, `12h`, `30d` (a unit is required). */
export function parseDurationSeconds(text: string): number | undefined {
  if (!/^\d+(\.\d+)?\s*(ms|s|m|h|d|w)$/.test(text.trim())) return undefined;
  const millis = ms(text.trim() as ms.StringValue);
  return typeof millis === 'number' && Number.isFinite(millis) ? millis / 1000 : undefined;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

const identifier = z.string().regex(IDENTIFIER);

const duration = (minSeconds: number, maxSeconds: number) =>
  z.string().transform((text, ctx) => {
    const seconds = parseDurationSeconds(text);
    if (seconds === undefined || seconds < minSeconds || seconds > maxSeconds) {
      ctx.addIssue({ code: 'custom', message: 'out of range' });
      return z.NEVER;
    }
    return seconds;
  });

const integer = (min: number, max: number) => z.string().regex(/^\d+$/).transform(Number).pipe(z.number().int().min(min).max(max));

const boolean = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** A decimal number such as 1.5 or 0.25 within [min, max]. */
const decimal = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+(\.\d+)?$/)
    .transform(Number)
    .pipe(z.number().min(min).max(max));

/** `off`, or a factor such as 1.5 (a decimal number) within [min, max]. */
const factorOrOff = (min: number, max: number) => z.union([z.literal('off').transform(() => null), decimal(min, max)]);

const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 };

/** `off`, or an amount of bytes per second with a PostgreSQL-style unit: 512kB, 16MB, 1GB. */
const rateOrOff = (minBytes: number, maxBytes: number) =>
  z.union([
    z.literal('off').transform(() => null),
    z.string().transform((text, ctx) => {
      const match = /^(\d+(?:\.\d+)?)\s*(B|kB|MB|GB)$/.exec(text.trim());
      const bytes = match ? Number(match[1]) * (SIZE_UNITS[match[2] ?? ''] ?? Number.NaN) : Number.NaN;
      if (!(bytes >= minBytes && bytes <= maxBytes)) {
        ctx.addIssue({ code: 'custom', message: 'out of range' });
        return z.NEVER;
      }
      return Math.round(bytes);
    }),
  ]);

/**
 * Five fields, minute granularity: pg-boss evaluates schedules once a minute and collapses a
 * seconds field into one job a minute, so a six-field cron would promise what it cannot keep.
 */
const schedule = z.string().refine((text) => text.trim().split(/\s+/).length === 5 && cron.validate(text) && pgBossAccepts(text) && stepsFit(text));

/**
 * node-cron's validate lets through expressions that pg-boss's parser (cron-parser) refuses when
 * the worker registers the schedule, after it has connected, with exit 1 and a message that names
 * no variable: a descending range (`5-1`), a value twice (`1,1`, `0-5,3`), `15W`. So the
 * configuration asks pg-boss itself, without a connection (the instance is never started).
 */
let scheduleParser: PgBoss | undefined;
function pgBossAccepts(text: string): boolean {
  scheduleParser ??= new PgBoss({ connectionString: 'postgres://schedule-check.invalid/unused' });
  try {
    scheduleParser.previewSchedule(text, { tz: 'UTC', count: 1 });
    return true;
  } catch {
    return false;
  }
}

/** Span of the five fields: minute, hour, day of month, month, day of week (0-7, both Sunday). */
const CRON_SPANS = [60, 24, 31, 12, 8] as const;

/**
 * A step longer than its field is read otherwise than written: `*\/61` runs hourly, not every 61
 * minutes, and both parsers accept it.
 */
function stepsFit(text: string): boolean {
  return text
    .trim()
    .split(/\s+/)
    .every((field, i) =>
      field.split(',').every((part) => {
        const step = part.split('/')[1];
        return step === undefined || (/^\d+$/.test(step) && Number(step) >= 1 && Number(step) <= (CRON_SPANS[i] ?? 0));
      }),
    );
}

const CRON_ALLOWED = 'a five-field cron expression (minute hour day-of-month month day-of-week) that pg-boss can schedule, steps no longer than their field';

const timeZone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
});

const databaseUrl = z.string().refine(isPostgresUrl);

const qualifiedName = z
  .string()
  .regex(/^[a-z_][a-z0-9_]{0,62}\.[a-z_][a-z0-9_]{0,62}$/)
  .transform((text): QualifiedName => {
    const [schema = '', name = ''] = text.split('.');
    return { schema, name };
  });

const PURGE_TABLES_ALLOWED =
  'a comma-separated list of schema.table:expiry_column[:grace], lower-case SQL identifiers and a grace duration from 0s to 365d, such as auth.one_time_token:expires_at,auth.flow_state:expires_at:1h';

/**
 * JANITOR_PURGE_TABLES, entry by entry, so that the one line of a mistake names the entry. The
 * syntax is the contract's (deployment tooling writes it); the identifiers pass the same checks as
 * JANITOR_SESSION_TABLE's before they reach SQL text (db/sql/identifiers.ts).
 */
function parsePurgeTables(text: string, sessionTable: QualifiedName): PurgeTable[] {
  const refuse = (entry: string, why: string) => new ConfigError('JANITOR_PURGE_TABLES', JSON.stringify(entry), `${why}; ${PURGE_TABLES_ALLOWED}`);
  const tables: PurgeTable[] = [];
  if (text.trim() === '') return tables;
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') throw refuse(text, 'an entry is empty');
    const [name = '', column, grace, ...rest] = entry.split(':');
    const table = qualifiedName.safeParse(name);
    if (!table.success) throw refuse(entry, `${JSON.stringify(name)} is not schema.table`);
    if (column === undefined || !identifier.safeParse(column).success) throw refuse(entry, 'the expiry column is missing or not a lower-case SQL identifier');
    if (rest.length > 0) throw refuse(entry, 'too many fields');
    const graceSeconds = grace === undefined ? 0 : duration(0, 365 * 86400).safeParse(grace);
    if (typeof graceSeconds !== 'number' && !graceSeconds.success) throw refuse(entry, `the grace ${JSON.stringify(grace)} is not a duration from 0s to 365d`);
    const label = tableLabel(table.data);
    if (label === tableLabel(sessionTable)) throw refuse(entry, 'the sessions table (JANITOR_SESSION_TABLE) is purged already');
    if (tables.some((t) => t.label === label)) throw refuse(entry, `${label} is listed twice`);
    tables.push({ table: table.data, expiryColumn: column, graceSeconds: typeof graceSeconds === 'number' ? graceSeconds : graceSeconds.data, label, entry });
  }
  return tables;
}

/** The passwords of a connection string replaced, for error messages and logs (db/connection-string.ts). */
export const redactDatabaseUrl = redactConnectionString;

interface Variable<T> {
  readonly schema: z.ZodType<T, string>;
  readonly fallback: string | undefined;
  readonly allowed: string;
  readonly secret?: boolean;
}

const variable = <T>(schema: z.ZodType<T, string>, fallback: string | undefined, allowed: string, secret = false): Variable<T> => ({
  schema,
  fallback,
  allowed,
  secret,
});

/**
 * Every variable, its default and what is allowed. The defaults of the batch and purge settings
 * come from the benchmark (`npm run bench`, docs/performance.md; 2M sessions, 800k expired, 2 cores):
 * - JANITOR_BATCH_SIZE 5000: where the adaptive sizing starts; it at most doubles per batch, so it
 *   reaches its size within two batches and the start matters little. 5000 rows took 3-4 ms in the
 *   benchmark: a safe first step on a slower production server.
 * - JANITOR_BATCH_MAX_SIZE 20000: the reaper's ranges (in ids, about 10,000 rows and 10-13 ms each)
 *   sat at this cap and its full pass ran at 1.02-1.16 of the single statement's rows/s; at 5000
 *   it fell to 0.87. It also bounds revocations' id ranges.
 * - JANITOR_PURGE_BATCH_MAX_SIZE 5000: the purge's own, lower cap. Its batches are dense (every
 *   row of the range goes) and reach any cap within two batches, so the cap alone decides how much
 *   WAL a batch writes between two commits: about 1.2 MB at 5000 rows, 5 MB at 20,000. Beside the
 *   auth service's refreshes, whose commits wait on that WAL's flush (LWLock:WALWrite and
 *   IO:WalSync, sampled from pg_stat_activity), 20,000-row batches raised the refreshes' p99 4-7
 *   fold in three of four runs, 5000-row batches 1.7-2.5 fold, at 0.80-0.94 of the single
 *   statement's rows/s instead of 0.87-1.12 (docs/performance.md). So it caps them only while
 *   someone writes: while the latency guard sees nobody writing on the server, nobody's commit
 *   waits on that WAL, and the purge's batches go up to JANITOR_BATCH_MAX_SIZE (tasks/engine.ts,
 *   BatchTask.idleMaxSize; docs/performance.md, "Target 1: larger batches while nobody writes").
 * - JANITOR_BATCH_TARGET_MS 25: half the 50 ms the issue allows a batch, so a batch twice as slow
 *   as the last one (a checkpoint, CPU contention) still stays within it.
 * - JANITOR_PURGE_CONCURRENCY 1: one lane, one core like the single statement it replaces, already
 *   reached 1.01-1.10 of it; two lanes reached 1.31-1.45 but took both cores of the benchmark
 *   machine: the auth service's refreshes went from p50 1.1 to 3-4 ms during the purge (one lane:
 *   1.4-2.9 ms) and their p99 up two- to six-fold. Raise it to drain a large backlog on a server
 *   with idle cores.
 * - JANITOR_PURGE_ASYNC_COMMIT true: 1.01-1.10 against 0.84-0.86 with synchronous commits; a crash
 *   loses only batches that the next run deletes again (db/sql/purge-expired.ts). It also covers the
 *   idle reaper's ranges and revocations' statements (db/sql/reap-idle.ts, db/sql/revoke.ts: why
 *   nothing is skipped or reported done before it is durable), where it measured within the noise.
 * - The throttle (tasks/throttle.ts) is off, but for a pause while a replica lags more than 60 s.
 * - JANITOR_LATENCY_GUARD 1.3 (docs/performance.md, "Latency guard"): the purge and the reaper hold
 *   back while a commit takes over 1.3 times (and 0.25 ms more than) what it takes without them and
 *   the auth service writes; at 1.5 (and 1 ms) the refreshes' p99 rose 1.5-1.7 fold beside the purge.
 * - JANITOR_PURGE_FRESHNESS_OBJECTIVE 1h: the threshold of the alert SessionJanitorExpiredBacklogOld
 *   (monitoring/prometheus), which fires 15 minutes after it is passed: the purge goes at full speed
 *   past it, to be back within it before the alert pages anyone.
 */
const VARIABLES = {
  DATABASE_URL: variable(databaseUrl, undefined, 'a postgres:// or postgresql:// URL with a host, or a unix socket directory as ?host=/path', true),
  JANITOR_DATA_DIR: variable(z.string().min(1), '.data', 'a directory for the embedded PostgreSQL'),
  PGBOSS_SCHEMA: variable(identifier, 'pgboss', 'a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)'),
  JANITOR_SESSION_TABLE: variable(qualifiedName, 'auth.refresh_session', 'schema.table, both lower-case SQL identifiers'),
  JANITOR_PURGE_TABLES: variable(z.string(), '', PURGE_TABLES_ALLOWED),
  JANITOR_PURGE_CRON: variable(schedule, '*/5 * * * *', CRON_ALLOWED),
  JANITOR_REAP_CRON: variable(schedule, '30 * * * *', CRON_ALLOWED),
  JANITOR_CRON_TZ: variable(timeZone, 'UTC', 'an IANA time zone such as UTC or Europe/Berlin'),
  JANITOR_EXPIRED_GRACE: variable(duration(0, 365 * 86400), '0s', 'a duration from 0s to 365d, such as 0s, 90s, 15m, 12h, 30d'),
  JANITOR_IDLE_TIMEOUT: variable(
    z.union([z.literal('off').transform(() => null), duration(3600, 3650 * 86400)]),
    '30d',
    '`off` or a duration of at least 1h, such as 12h, 30d',
  ),
  JANITOR_BATCH_SIZE: variable(integer(10, 100_000), '5000', 'an integer from 10 to 100000'),
  JANITOR_BATCH_MIN_SIZE: variable(integer(10, 100_000), '100', 'an integer from 10 to 100000, not above JANITOR_BATCH_SIZE'),
  JANITOR_BATCH_MAX_SIZE: variable(integer(10, 100_000), '20000', 'an integer from 10 to 100000, not below JANITOR_BATCH_SIZE'),
  JANITOR_BATCH_TARGET_MS: variable(integer(1, 10_000), '25', 'an integer number of milliseconds from 1 to 10000'),
  JANITOR_PURGE_BATCH_MAX_SIZE: variable(integer(10, 100_000), '5000', 'an integer from 10 to 100000, not below JANITOR_BATCH_MIN_SIZE'),
  JANITOR_PURGE_CONCURRENCY: variable(integer(1, 16), '1', 'an integer from 1 to 16'),
  JANITOR_PURGE_ASYNC_COMMIT: variable(boolean, 'true', 'true or false'),
  JANITOR_PURGE_DUTY_CYCLE: variable(integer(1, 100), '100', 'an integer percentage from 1 to 100 (100: no duty-cycle sleep)'),
  JANITOR_PURGE_MAX_WAL_RATE: variable(rateOrOff(64 * 1024, 1024 ** 4), 'off', '`off` or bytes per second from 64kB to 1024GB, such as 512kB, 16MB, 1GB'),
  JANITOR_PURGE_MAX_REPLICA_LAG: variable(
    z.union([z.literal('off').transform(() => null), duration(1, 86_400)]),
    '60s',
    '`off` or a duration from 1s to 1d, such as 30s, 5m',
  ),
  JANITOR_PURGE_PAUSE_ON_VACUUM: variable(boolean, 'false', 'true or false'),
  JANITOR_LATENCY_GUARD: variable(factorOrOff(1.05, 100), '1.3', '`off` or a factor from 1.05 to 100, such as 1.5'),
  JANITOR_LATENCY_GUARD_MIN_SPEED: variable(decimal(1 / 16, 1), '0.0625', 'a fraction of full speed from 0.0625 (1/16) to 1, such as 0.25'),
  JANITOR_PURGE_FRESHNESS_OBJECTIVE: variable(
    z.union([z.literal('off').transform(() => null), duration(60, 365 * 86400)]),
    '1h',
    '`off` or a duration from 1m to 365d, such as 30m, 1h, 6h',
  ),
  JANITOR_BLAST_RADIUS: variable(factorOrOff(0.001, 1), '0.1', "`off` or a fraction of the table's rows from 0.001 to 1, such as 0.1"),
  JANITOR_CLOCK_SKEW_TOLERANCE: variable(
    z.union([z.literal('off').transform(() => null), duration(1, 86_400)]),
    '60s',
    '`off` or a duration from 1s to 1d, such as 60s, 5m',
  ),
  JANITOR_MAX_RUN_SECONDS: variable(integer(1, 86_400), '240', 'an integer number of seconds from 1 to 86400'),
  JANITOR_MAX_RUN_ROWS: variable(integer(0, 1_000_000_000), '0', 'an integer from 0 (no limit) to 1000000000'),
  JANITOR_STATEMENT_TIMEOUT: variable(duration(0.1, 600), '10s', 'a duration from 100ms to 600s'),
  JANITOR_LOCK_TIMEOUT: variable(duration(0.01, 60), '200ms', 'a duration from 10ms to 60s'),
  JANITOR_REVOKE_CONCURRENCY: variable(integer(1, 64), '4', 'an integer from 1 to 64'),
  JANITOR_METRICS_PORT: variable(integer(0, 65_535), '9464', 'a TCP port from 0 to 65535 (0: any free port)'),
  JANITOR_METRICS_HOST: variable(z.string().min(1), '0.0.0.0', 'an address to listen on'),
  JANITOR_GAUGE_REFRESH_CRON: variable(
    z.string().refine((text) => cron.validate(text)),
    '*/30 * * * * *',
    'a node-cron expression (six fields allowed: seconds first)',
  ),
  JANITOR_BACKLOG_COUNT_CAP: variable(integer(1, 100_000_000), '100000', 'an integer from 1 to 100000000'),
  JANITOR_SHUTDOWN_TIMEOUT: variable(duration(1, 300), '25s', 'a duration from 1s to 300s'),
  JANITOR_HEARTBEAT: variable(duration(10, 3600), '30s', 'a duration from 10s (pg-boss minimum) to 1h'),
  JANITOR_SUPERVISE_INTERVAL: variable(duration(1, 3600), '60s', 'a duration from 1s to 1h'),
  JANITOR_SCHEDULE_CHECK_INTERVAL: variable(duration(1, 45), '30s', "a duration from 1s to 45s (pg-boss's range for its cron pass)"),
  JANITOR_RETRY_DELAY: variable(duration(1, 3600), '15s', 'a duration from 1s to 1h'),
  JANITOR_RETRY_WINDOW: variable(duration(60, 7 * 86400), '1h', 'a duration from 60s to 7d'),
  JANITOR_MIGRATE: variable(boolean, 'true', 'true or false'),
  JANITOR_DEMO_DATA: variable(boolean, 'true', 'true or false (only used with the embedded PostgreSQL)'),
  LOG_LEVEL: variable(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), 'info', 'one of fatal, error, warn, info, debug, trace, silent'),
  JANITOR_LOG_FORMAT: variable(z.enum(LOG_FORMATS), 'pino', 'one of pino, ecs, gcp'),
} as const;

type Parsed = { [K in keyof typeof VARIABLES]: (typeof VARIABLES)[K] extends Variable<infer T> ? T : never };

function read<K extends keyof typeof VARIABLES>(env: NodeJS.ProcessEnv, key: K): Parsed[K] | undefined {
  const spec = VARIABLES[key] as Variable<Parsed[K]>;
  const raw = env[key] === '' ? undefined : env[key];
  const text = raw ?? spec.fallback;
  if (text === undefined) return undefined;
  const result = spec.schema.safeParse(text);
  if (!result.success) {
    const shown = spec.secret ? redactDatabaseUrl(text) : text;
    throw new ConfigError(key, JSON.stringify(shown), spec.allowed);
  }
  return result.data;
}

function required<T>(value: T | undefined): T {
  if (value === undefined) throw new Error('a variable with a default came back undefined');
  return value;
}

/**
 * Parses and validates the whole configuration. Throws ConfigError on the first bad value.
 * checkout: whether an unset DATABASE_URL may mean the embedded development server (the sources of
 * a checkout run; the image and a packed package run dist/).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, checkout: boolean = fromSource): Config {
  // An empty DATABASE_URL is what a failed secret lookup leaves: outside a checkout it must not pass
  // for unset (which a checkout reads as the embedded database).
  if (env.DATABASE_URL === '' && !checkout) {
    throw new ConfigError('DATABASE_URL', '""', "empty (a secret that did not resolve?): set it to the auth database's postgres:// URL");
  }
  const get = <K extends keyof typeof VARIABLES>(key: K) => required(read(env, key));
  const batchSize = get('JANITOR_BATCH_SIZE');
  const batchMinSize = get('JANITOR_BATCH_MIN_SIZE');
  const batchMaxSize = get('JANITOR_BATCH_MAX_SIZE');
  if (batchMinSize > batchSize) {
    throw new ConfigError('JANITOR_BATCH_MIN_SIZE', String(batchMinSize), `must not be above JANITOR_BATCH_SIZE (${batchSize})`);
  }
  if (batchMaxSize < batchSize) {
    throw new ConfigError('JANITOR_BATCH_MAX_SIZE', String(batchMaxSize), `must not be below JANITOR_BATCH_SIZE (${batchSize})`);
  }
  const purgeBatchMaxSize = get('JANITOR_PURGE_BATCH_MAX_SIZE');
  if (purgeBatchMaxSize < batchMinSize) {
    throw new ConfigError('JANITOR_PURGE_BATCH_MAX_SIZE', String(purgeBatchMaxSize), `must not be below JANITOR_BATCH_MIN_SIZE (${batchMinSize})`);
  }
  const maxRunRows = get('JANITOR_MAX_RUN_ROWS');
  let databaseUrl = read(env, 'DATABASE_URL');
  if (databaseUrl !== undefined) {
    const ssl = withLibpqSslMode(databaseUrl);
    if ('refused' in ssl) throw new ConfigError('DATABASE_URL', JSON.stringify(redactDatabaseUrl(databaseUrl)), ssl.refused);
    databaseUrl = ssl.connectionString;
  }
  const sessionTable = get('JANITOR_SESSION_TABLE');
  return Object.freeze({
    databaseUrl,
    dataDir: get('JANITOR_DATA_DIR'),
    pgbossSchema: get('PGBOSS_SCHEMA'),
    sessionTable,
    purgeTables: parsePurgeTables(read(env, 'JANITOR_PURGE_TABLES') ?? '', sessionTable),
    purgeCron: get('JANITOR_PURGE_CRON'),
    reapCron: get('JANITOR_REAP_CRON'),
    cronTz: get('JANITOR_CRON_TZ'),
    expiredGraceSeconds: get('JANITOR_EXPIRED_GRACE'),
    idleTimeoutSeconds: read(env, 'JANITOR_IDLE_TIMEOUT') ?? null,
    batchSize,
    batchMinSize,
    batchMaxSize,
    batchTargetMs: get('JANITOR_BATCH_TARGET_MS'),
    purgeBatchMaxSize: Math.min(purgeBatchMaxSize, batchMaxSize),
    purgeConcurrency: get('JANITOR_PURGE_CONCURRENCY'),
    asyncCommit: get('JANITOR_PURGE_ASYNC_COMMIT'),
    purgeDutyCyclePercent: get('JANITOR_PURGE_DUTY_CYCLE'),
    purgeMaxWalBytesPerSecond: read(env, 'JANITOR_PURGE_MAX_WAL_RATE') ?? null,
    purgeMaxReplicaLagSeconds: read(env, 'JANITOR_PURGE_MAX_REPLICA_LAG') ?? null,
    purgePauseOnVacuum: get('JANITOR_PURGE_PAUSE_ON_VACUUM'),
    latencyGuardFactor: read(env, 'JANITOR_LATENCY_GUARD') ?? null,
    latencyGuardMinSpeed: get('JANITOR_LATENCY_GUARD_MIN_SPEED'),
    purgeFreshnessObjectiveSeconds: read(env, 'JANITOR_PURGE_FRESHNESS_OBJECTIVE') ?? null,
    clockSkewToleranceSeconds: read(env, 'JANITOR_CLOCK_SKEW_TOLERANCE') ?? null,
    blastRadius: read(env, 'JANITOR_BLAST_RADIUS') ?? null,
    maxRunSeconds: get('JANITOR_MAX_RUN_SECONDS'),
    maxRunRows: maxRunRows === 0 ? null : maxRunRows,
    statementTimeoutMs: Math.round(get('JANITOR_STATEMENT_TIMEOUT') * 1000),
    lockTimeoutMs: Math.round(get('JANITOR_LOCK_TIMEOUT') * 1000),
    revokeConcurrency: get('JANITOR_REVOKE_CONCURRENCY'),
    metricsPort: get('JANITOR_METRICS_PORT'),
    metricsHost: get('JANITOR_METRICS_HOST'),
    gaugeRefreshCron: get('JANITOR_GAUGE_REFRESH_CRON'),
    backlogCountCap: get('JANITOR_BACKLOG_COUNT_CAP'),
    shutdownTimeoutMs: Math.round(get('JANITOR_SHUTDOWN_TIMEOUT') * 1000),
    heartbeatSeconds: Math.round(get('JANITOR_HEARTBEAT')),
    retryDelaySeconds: Math.round(get('JANITOR_RETRY_DELAY')),
    retryWindowSeconds: Math.round(get('JANITOR_RETRY_WINDOW')),
    superviseIntervalSeconds: Math.round(get('JANITOR_SUPERVISE_INTERVAL')),
    scheduleCheckSeconds: Math.round(get('JANITOR_SCHEDULE_CHECK_INTERVAL')),
    migrateOnStart: get('JANITOR_MIGRATE'),
    demoData: get('JANITOR_DEMO_DATA'),
    logLevel: get('LOG_LEVEL'),
    logFormat: get('JANITOR_LOG_FORMAT'),
    tracing: tracingFromEnv(env),
  });
}

/** The names of every variable loadConfig reads, for the README and the tests. */
export const CONFIG_VARIABLES = Object.keys(VARIABLES) as ReadonlyArray<keyof typeof VARIABLES>;
