/**
 * Runs a task of the worker through its real code path, purgeExpired() of src/tasks/purge-expired.ts
 * (or, with SJ_BENCH_TASK=reap-idle, reapIdle() of src/tasks/reap-idle.ts; with SJ_BENCH_TASK=revoke,
 * revoke() of src/tasks/revoke.ts on the request sent with `run`, with SJ_BENCH_REVOKE_IDS and
 * SJ_BENCH_REVOKE_LANES as its idsPerStatement and lanes when set), in a process of its own, so
 * that its peak RSS is the worker's and not the benchmark's, and so that the refresh workload's
 * timings (another process) do not share an event loop with it.
 *
 * Protocol (IPC, forked by children.ts): the child opens its pool and warms one connection per lane
 * (a long-lived worker's pool is warm), sends `ready`, runs on `run`, sends `result` and exits.
 * Configuration: SJ_BENCH_URL and the worker's own JANITOR_* variables in the environment.
 */
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { createLogger } from '../src/logger.ts';
import { createMetrics } from '../src/metrics.ts';
import type { RunOptions, RunOutput } from '../src/tasks/batching.ts';
import type { TaskContext } from '../src/tasks/context.ts';
import { HeldBack } from '../src/tasks/held-back.ts';
import { ACTIVITY_SPAN_MS } from '../src/tasks/latency-guard.ts';
import { primeActivity } from '../src/tasks/latency-probe.ts';
import { purgeExpired, purgeTable } from '../src/tasks/purge-expired.ts';
import { reapIdle } from '../src/tasks/reap-idle.ts';
import { revoke } from '../src/tasks/revoke.ts';
import type { RevokeRequest } from '../src/revoke-request.ts';
import type { ChildResult, ParentMessage } from './protocol.ts';

const url = process.env.SJ_BENCH_URL;
if (url === undefined || process.send === undefined) throw new Error('purge-child.ts is forked by the benchmark with SJ_BENCH_URL');

// SJ_BENCH_EXTRA_TABLES=n (case E): n empty tables of JANITOR_PURGE_TABLES, each purged beside the
// sessions table's purge, all started at once as a worker's tick starts them.
const extraTables = Number(process.env.SJ_BENCH_EXTRA_TABLES ?? 0);
const extraEntries = Array.from({ length: extraTables }, (_, i) => `bench_extra.t${i + 1}:expires_at`).join(',');
const config = loadConfig({
  ...process.env,
  DATABASE_URL: url,
  LOG_LEVEL: 'silent',
  JANITOR_METRICS_PORT: '0',
  ...(extraTables > 0 ? { JANITOR_PURGE_TABLES: extraEntries } : {}),
});
const pool = createPool({
  connectionString: url,
  // A connection per lane, one for the task's own statements, one for the latency guard's probe (as the worker's pool).
  // Each extra table: its lane and its guard's probe.
  max: config.purgeConcurrency + 3 + 2 * extraTables,
  statementTimeoutMs: config.statementTimeoutMs,
  lockTimeoutMs: config.lockTimeoutMs,
  applicationName: 'sj-bench-purge',
});
const ctx: TaskContext = { pool, config, metrics: createMetrics(config), log: createLogger('silent') };

for (let i = 1; i <= extraTables; i += 1) {
  await pool.query(`CREATE SCHEMA IF NOT EXISTS bench_extra;
    CREATE TABLE IF NOT EXISTS bench_extra.t${i} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, expires_at timestamptz NOT NULL);
    CREATE INDEX IF NOT EXISTS t${i}_expires_at_idx ON bench_extra.t${i} (expires_at)`);
}

type Task = (ctx: TaskContext, options: RunOptions, request: unknown) => Promise<RunOutput>;
function selectTask(name: string): Task {
  if (name === 'purge-expired' && extraTables > 0) {
    // The sessions purge's own figures (its batches, its time); the empty tables' runs beside it.
    return async (c, options) => {
      const [sessions] = await Promise.all([purgeExpired(c, options), ...c.config.purgeTables.map((t) => purgeTable(c, t))]);
      return sessions;
    };
  }
  if (name === 'purge-expired') return (c, options) => purgeExpired(c, options);
  if (name === 'reap-idle') return (c, options) => reapIdle(c, options);
  if (name === 'revoke') {
    // The benchmark's knobs of revoke() (RevokeOptions): users or jtis a statement, connections.
    const knobs = {
      ...(process.env.SJ_BENCH_REVOKE_IDS ? { idsPerStatement: Number(process.env.SJ_BENCH_REVOKE_IDS) } : {}),
      ...(process.env.SJ_BENCH_REVOKE_LANES ? { lanes: Number(process.env.SJ_BENCH_REVOKE_LANES) } : {}),
    };
    return async (c, _options, request) => {
      const output = await revoke(c, request as RevokeRequest, knobs);
      return { deleted: output.revoked, batches: 0, stoppedBy: 'drained' };
    };
  }
  throw new Error(`unknown SJ_BENCH_TASK ${name}`);
}
const task = selectTask(process.env.SJ_BENCH_TASK ?? 'purge-expired');

// A revocation may work on two connections (src/tasks/revoke.ts): a long-lived worker's pool has them.
// The latency guard's probe takes one more (tasks/latency-probe.ts).
const warmConnections = process.env.SJ_BENCH_TASK === 'revoke' ? 2 : config.purgeConcurrency + (config.latencyGuardFactor === null ? 0 : 1);
const warm = await Promise.all(Array.from({ length: warmConnections }, () => pool.connect()));
for (const client of warm) client.release();
// A long-lived worker's latency guard knows from its earlier runs whether the auth service writes
// (tasks/latency-guard.ts, ActivityTracker); this fresh process reads the counter once and waits
// out the span a rate needs, so that its run starts knowing as well. SJ_BENCH_FIRST_RUN=1: it does
// not, as a CLI run or a pod's first tick does not.
if (config.latencyGuardFactor !== null && process.env.SJ_BENCH_FIRST_RUN !== '1') {
  await primeActivity(ctx);
  await new Promise((resolve) => setTimeout(resolve, ACTIVITY_SPAN_MS));
}

async function run(message: ParentMessage): Promise<void> {
  if (message.type !== 'run') return;
  const batches: Array<[number, number, number]> = [];
  const heldBack = new HeldBack(ctx.metrics, process.env.SJ_BENCH_TASK === 'reap-idle' ? 'reap-idle' : 'purge-expired');
  let rssMax = process.memoryUsage.rss();
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, process.memoryUsage.rss())), 10);
  const startedAt = Date.now();
  const started = performance.now();
  let result: ChildResult;
  try {
    const output = await task(ctx, { onBatch: (b) => batches.push([b.rows, b.durationMs, Date.now()]), heldBack }, message.request);
    const elapsedMs = performance.now() - started;
    const endedAt = Date.now();
    clearInterval(sampler);
    rssMax = Math.max(rssMax, process.memoryUsage.rss());
    const histogram = await ctx.metrics.batchDuration.get();
    result = {
      type: 'result',
      output,
      elapsedMs,
      startedAt,
      endedAt,
      batches,
      rssSampledMaxBytes: rssMax,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      heldBack: heldBack.summary,
      histogram: histogram.values
        .filter((v) => v.metricName === 'session_janitor_batch_duration_seconds_bucket')
        .map((v) => {
          const le = (v.labels as Record<string, string | number>).le;
          return [le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), v.value] as const;
        }),
    };
  } catch (error) {
    result = { type: 'error', message: error instanceof Error ? `${error.message}\n${error.stack}` : String(error) };
  } finally {
    clearInterval(sampler);
    await pool.end();
  }
  // Disconnect only once the (large) message is out.
  process.send?.(result, undefined, {}, () => process.disconnect());
}
process.once('message', (message: ParentMessage) => void run(message));
process.send?.({ type: 'ready' });
