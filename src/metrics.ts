/**
 * The worker's Prometheus metrics: one Registry of the app's own (so two workers in one process,
 * as in the tests, never share counters), the metrics of docs/CONTRACT.md, and prom-client's
 * default process and Node.js metrics.
 *
 * No label ever holds a user id, a jti, an IP address or free text: every label value below comes
 * from a closed set named in this file.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { buildInfo } from './build-info.ts';
import { tableLabel, type Config } from './config.ts';
import { QUEUES, SCHEDULED_TASKS, scheduledTasks, type ScheduledTask, type ScheduledTaskName } from './queues.ts';

export type Task = ScheduledTaskName | 'revoke';
export const TASKS: readonly Task[] = [...SCHEDULED_TASKS.map((t) => t.task), 'revoke'];

export type DeleteReason = ScheduledTask['reason'] | 'revoked';
export const DELETE_REASONS: readonly DeleteReason[] = [...SCHEDULED_TASKS.map((t) => t.reason), 'revoked'];

/** What the metrics' closed label sets are derived from: the tables and so the tasks of this configuration. */
export type MetricsScope = Pick<Config, 'purgeTables' | 'sessionTable'>;

/** The sessions table alone, as without JANITOR_PURGE_TABLES. */
const SESSIONS_ONLY: MetricsScope = { purgeTables: [], sessionTable: { schema: 'auth', name: 'refresh_session' } };

/**
 * The `table` label's values and the reasons each table's rows go for: the sessions table's three,
 * and `expired` for each extra table of JANITOR_PURGE_TABLES. A closed set from the configuration.
 */
export function tableSeries(scope: MetricsScope): ReadonlyArray<{ table: string; reasons: readonly DeleteReason[] }> {
  return [
    { table: tableLabel(scope.sessionTable), reasons: DELETE_REASONS },
    ...scope.purgeTables.map((t) => ({ table: t.label, reasons: ['expired'] as const })),
  ];
}

export const JOB_OUTCOMES = ['completed', 'failed', 'rejected'] as const;
export type JobOutcome = (typeof JOB_OUTCOMES)[number];

/** What went wrong, for session_janitor_errors_total: a closed set, never an error message. */
export const ERROR_KINDS = ['batch-timeout', 'lock-timeout', 'gauge-refresh', 'database', 'pg-boss'] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

/**
 * Why a purge or reap waited instead of deleting, for session_janitor_held_back_seconds_total: the
 * latency guard (tasks/latency-guard.ts), and the purge's throttle brakes (tasks/throttle.ts).
 */
export const HELD_BACK_REASONS = ['latency', 'duty-cycle', 'wal-rate', 'replica-lag', 'vacuum'] as const;
export type HeldBackReason = (typeof HELD_BACK_REASONS)[number];

/** The reasons each task can be held back for: the throttle's only where it applies; every task has the guard. */
const heldBackSeries = (tasks: readonly ScheduledTask[]): ReadonlyArray<{ task: ScheduledTaskName; reasons: readonly HeldBackReason[] }> =>
  tasks.map(({ task, throttled }) => ({ task, reasons: throttled ? HELD_BACK_REASONS : ['latency'] }));

/**
 * Batches aim at a few tens of milliseconds (JANITOR_BATCH_TARGET_MS); the buckets are dense there
 * and reach the statement timeout so that a slow batch is visible rather than lumped into +Inf.
 */
const BATCH_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Revocations from enqueue to completion: milliseconds when a worker is idle (NOTIFY wakes it), the
 * retry backoff's seconds to minutes after a failure, an outage's length at worst. 60 is the
 * objective's threshold (docs/runbook.md, Revocation latency objective) and must stay a boundary.
 */
export const REVOCATION_LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600];

/** Jobs run from milliseconds (a single-user revocation) to the run budget (240 s by default). */
const JOB_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/**
 * The queues this worker consumes and the outcomes each can have: only a revocation can be
 * rejected (an invalid payload); the scheduled runs carry no payload to reject.
 */
const jobSeries = (tasks: readonly ScheduledTask[]): ReadonlyArray<{ queue: string; outcomes: readonly JobOutcome[] }> => [
  ...tasks.map(({ queue }) => ({ queue, outcomes: ['completed', 'failed'] as const })),
  { queue: QUEUES.revoke, outcomes: JOB_OUTCOMES },
];

/** scope: the configuration's tables (JANITOR_PURGE_TABLES adds tasks and `table` label values); the sessions table alone by default. */
export function createMetrics(scope: MetricsScope = SESSIONS_ONLY) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const metrics = {
    registry,
    sessionsDeleted: new Counter({
      name: 'session_janitor_sessions_deleted_total',
      help: 'Sessions deleted from auth.refresh_session, by reason (expired, idle, revoked). Rate it for rows per second; a flat line while the expired backlog grows means the purge is stuck.',
      labelNames: ['reason'] as const,
      registers,
    }),
    batchDuration: new Histogram({
      name: 'session_janitor_batch_duration_seconds',
      help: 'Seconds one batch (one short transaction) took, by task. The p99 should stay near JANITOR_BATCH_TARGET_MS; a long tail means lock waits or an overloaded database.',
      labelNames: ['task'] as const,
      buckets: BATCH_BUCKETS,
      registers,
    }),
    jobs: new Counter({
      name: 'session_janitor_jobs_total',
      help: 'pg-boss jobs this pod finished, by queue and outcome: completed, failed (will be retried or dead-lettered when retries run out), rejected (invalid payload, dead-lettered at once). Alert on the failed ratio.',
      labelNames: ['queue', 'outcome'] as const,
      registers,
    }),
    jobDuration: new Histogram({
      name: 'session_janitor_job_duration_seconds',
      help: 'Seconds a job took in this pod, by queue. A purge or reap near JANITOR_MAX_RUN_SECONDS means the backlog is larger than one run can drain.',
      labelNames: ['queue'] as const,
      buckets: JOB_BUCKETS,
      registers,
    }),
    revocationLatency: new Histogram({
      name: 'session_janitor_revocation_latency_seconds',
      help: 'Seconds from enqueue (pg-boss created_on, retries included) to the completion of each revocation, observed by the pod that completed it, so summing over pods counts each once. The SLO: the share done within 60 s (le="60").',
      buckets: REVOCATION_LATENCY_BUCKETS,
      registers,
    }),
    lastSuccess: new Gauge({
      name: 'session_janitor_last_success_timestamp_seconds',
      help: 'Unix time in seconds of the last completed run of a scheduled task, read from the pg-boss job history (the same in every pod). Alert when now() minus it exceeds a few periods.',
      labelNames: ['task'] as const,
      registers,
    }),
    expiredBacklogOldest: new Gauge({
      name: 'session_janitor_expired_backlog_oldest_seconds',
      help: 'Seconds the oldest purgeable session has waited past its expiry plus JANITOR_EXPIRED_GRACE (0 when none). Growing steadily means purges are not keeping up.',
      registers,
    }),
    expiredBacklogSessions: new Gauge({
      name: 'session_janitor_expired_backlog_sessions',
      help: 'Purgeable sessions not yet purged, counted up to JANITOR_BACKLOG_COUNT_CAP (a value at the cap means at least that many).',
      registers,
    }),
    queueJobs: new Gauge({
      name: 'session_janitor_queue_jobs',
      help: 'Jobs in each pg-boss queue of the worker by state (queued, active, deferred, failed), from pg-boss queue counts (refreshed about once a minute). A non-empty dead-letter queue needs a human.',
      labelNames: ['queue', 'state'] as const,
      registers,
    }),
    databaseUp: new Gauge({
      name: 'session_janitor_database_up',
      help: 'Whether this pod can use the database, as of its last readiness check (every 5 s): 1 when it answered and the sessions table is there with SELECT and DELETE for the role, 0 otherwise (unreachable, login refused, wrong database, privileges missing). max over pods == 0: no worker can work.',
      registers,
    }),
    errors: new Counter({
      name: 'session_janitor_errors_total',
      help: 'Errors the worker handled without crashing, by kind (batch-timeout, lock-timeout, gauge-refresh, database, pg-boss). A steady rate means the database is struggling; read the logs.',
      labelNames: ['kind'] as const,
      registers,
    }),
    stalledRuns: new Counter({
      name: 'session_janitor_stalled_runs_total',
      help: 'Purge or reap runs that deleted nothing while rows were left to delete (held by other transactions, or a time budget too short for one batch), by task. Several in a row: a run cannot progress; read the logs.',
      labelNames: ['task'] as const,
      registers,
    }),
    heldBack: new Counter({
      name: 'session_janitor_held_back_seconds_total',
      help: 'Seconds a purge or reap waited between batches instead of deleting, by task and reason: latency (the latency guard saw the commits of others slow down, JANITOR_LATENCY_GUARD), duty-cycle, wal-rate, replica-lag, vacuum (the purge throttle). Summed over the purge lanes. Beside the deletion rate it says why the rate fell.',
      labelNames: ['task', 'reason'] as const,
      registers,
    }),
    rowsDeleted: new Counter({
      name: 'session_janitor_rows_deleted_total',
      help: "Rows deleted, by table (the sessions table and each table of JANITOR_PURGE_TABLES, as schema.table) and reason (expired, idle, revoked). The sessions table's rows are also in session_janitor_sessions_deleted_total.",
      labelNames: ['table', 'reason'] as const,
      registers,
    }),
    tableBacklogRows: new Gauge({
      name: 'session_janitor_table_backlog_rows',
      help: 'Purgeable rows not yet purged, by table (the sessions table and each table of JANITOR_PURGE_TABLES), counted up to JANITOR_BACKLOG_COUNT_CAP (a value at the cap means at least that many).',
      labelNames: ['table'] as const,
      registers,
    }),
    tableBacklogOldest: new Gauge({
      name: 'session_janitor_table_backlog_oldest_seconds',
      help: "Seconds the oldest purgeable row of each table has waited past its expiry plus its grace (0 when none). Growing steadily means that table's purge is not keeping up.",
      labelNames: ['table'] as const,
      registers,
    }),
    // The "info" pattern (node_exporter's node_uname_info): a constant 1 whose labels say what runs,
    // set once; join on it (`* on(pod) group_left(version)`) to see a rollout's version in a graph.
    buildInfo: new Gauge({
      name: 'session_janitor_build_info',
      help: 'Always 1; its labels name the release this pod runs: version (package.json), revision (git commit), pg-boss and Node.js versions. Two values of version at once means a rollout in progress (or stuck).',
      labelNames: ['version', 'revision', 'pgboss_version', 'node_version'] as const,
      registers,
    }),
    pausedUntil: new Gauge({
      name: 'session_janitor_paused_until_timestamp_seconds',
      help: 'Unix time in seconds at which the pause of a task ends (session-janitor pause), 0 while it is not paused; read from the database (the same in every pod). A pause ends by itself, at most 24 h after it was set.',
      labelNames: ['task'] as const,
      registers,
    }),
    pausedSince: new Gauge({
      name: 'session_janitor_paused_since_timestamp_seconds',
      help: 'Unix time in seconds since which a task is paused without a break (renewals included), 0 while it is not paused. time() minus it: how long the pause has lasted (alert SessionJanitorPausedTooLong).',
      labelNames: ['task'] as const,
      registers,
    }),
    pauseRenewals: new Gauge({
      name: 'session_janitor_pause_renewals',
      help: 'How often the pause in force of a task was renewed (paused again before it ended), 0 while it is not paused (alert SessionJanitorPauseRenewedRepeatedly).',
      labelNames: ['task'] as const,
      registers,
    }),
    blastRadiusStopped: new Gauge({
      name: 'session_janitor_blast_radius_stopped',
      help: 'A task the blast-radius guard stopped (1) before it deleted more than JANITOR_BLAST_RADIUS of the table retroactively (a clock or timestamps that jumped, a setting changed); it deletes nothing until an operator runs session-janitor confirm or the settings change. Alert SessionJanitorBlastRadiusStop.',
      labelNames: ['task'] as const,
      registers,
    }),
    clockSkew: new Gauge({
      name: 'session_janitor_clock_skew_seconds',
      help: "Seconds the database's now() is ahead of this pod's clock (negative: behind), measured at start and at each gauge refresh. Beyond JANITOR_CLOCK_SKEW_TOLERANCE the purge and the reaper hold (session_janitor_clock_skew_hold).",
      registers,
    }),
    clockSkewHold: new Gauge({
      name: 'session_janitor_clock_skew_hold',
      help: "1 while this pod's purge and reaper hold because the database's clock and the pod's differ by more than JANITOR_CLOCK_SKEW_TOLERANCE, else 0 (alert SessionJanitorClockSkew); revocations go on.",
      registers,
    }),
    freshnessOverride: new Counter({
      name: 'session_janitor_freshness_override_seconds_total',
      help: "Seconds a purge went at full speed, the latency guard set aside, because the oldest row it had left had waited past its expiry longer than JANITOR_PURGE_FRESHNESS_OBJECTIVE, by task: the objective won over the auth service's commit latency. Rising for long: the purge cannot keep up at the pace the guard allows.",
      labelNames: ['task'] as const,
      registers,
    }),
    latencyProbeLockWaits: new Counter({
      name: 'session_janitor_latency_probe_lock_waits_total',
      help: 'Latency guard probes that found their row (session_janitor.latency_probe) locked by another transaction, by task: such a probe measures the lock, not a commit, so it is not taken; the guard probes another row and keeps guarding. Any increase: something locks the probe table, read the logs.',
      labelNames: ['task'] as const,
      registers,
    }),
  };
  const build = buildInfo();
  metrics.buildInfo.set({ version: build.version, revision: build.revision, pgboss_version: build.pgbossVersion, node_version: build.nodeVersion }, 1);
  startAtZero(metrics, scope);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Every series of a known label set exists at 0 from the first scrape (Prometheus's
 * instrumentation guidelines: "avoid missing metrics"). rate() and increase() need a sample before
 * the first increment to count it: a series born at its first increment loses that increment, in
 * every process, so a pod that deletes 300 expired rows once and is then replaced would show 0 on
 * the dashboard.
 */
function startAtZero(metrics: Metrics, scope: MetricsScope): void {
  const tasks = scheduledTasks(scope);
  for (const reason of DELETE_REASONS) metrics.sessionsDeleted.inc({ reason }, 0);
  for (const { table, reasons } of tableSeries(scope)) {
    for (const reason of reasons) metrics.rowsDeleted.inc({ table, reason }, 0);
    metrics.tableBacklogRows.set({ table }, 0);
    metrics.tableBacklogOldest.set({ table }, 0);
  }
  for (const kind of ERROR_KINDS) metrics.errors.inc({ kind }, 0);
  for (const task of [...tasks.map((t) => t.task), 'revoke' as const]) metrics.batchDuration.zero({ task });
  for (const { task } of tasks) metrics.stalledRuns.inc({ task }, 0);
  const heldBack = heldBackSeries(tasks);
  for (const { task, reasons } of heldBack) for (const reason of reasons) metrics.heldBack.inc({ task, reason }, 0);
  for (const { task } of heldBack) metrics.latencyProbeLockWaits.inc({ task }, 0);
  for (const { task } of tasks.filter((t) => t.reason === 'expired')) metrics.freshnessOverride.inc({ task }, 0);
  // The guarded tasks (tasks/blast-guard.ts), and the pausable ones (tasks/pause.ts PAUSE_TASKS): the
  // built-in scheduled ones (an extra table's purge obeys the purge's pause) and the revocations.
  for (const { task } of SCHEDULED_TASKS) metrics.blastRadiusStopped.set({ task }, 0);
  for (const task of [...SCHEDULED_TASKS.map((t) => t.task), 'revoke' as const])
    for (const gauge of [metrics.pausedUntil, metrics.pausedSince, metrics.pauseRenewals]) gauge.set({ task }, 0);
  for (const { queue, outcomes } of jobSeries(tasks)) {
    metrics.jobDuration.zero({ queue });
    for (const outcome of outcomes) metrics.jobs.inc({ queue, outcome }, 0);
  }
}
