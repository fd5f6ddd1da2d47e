/**
 * The benchmark's cases. Each runs on its own fresh copy of the template (copyOfTemplate), and each
 * reports rows, seconds, rows/s, batch durations and the WAL written (pg_current_wal_insert_lsn
 * before and after: the whole server's WAL, which during a case is the case's own, plus the
 * refresh workload's where one runs).
 */
import type pg from 'pg';
import { createPool } from '../src/db/pool.ts';
import { PROBE_INTERVAL_MS } from '../src/tasks/latency-guard.ts';
import { commitLatencyProbe } from '../src/tasks/latency-probe.ts';
import { forkPurge, startWorkload, type PurgeRun, type RateProfile } from './children.ts';
import { copyOfTemplate, walPosition, withClient, type CaseDatabase } from './db.ts';
import { IDLE_DAYS } from './dataset.ts';
import type { WorkloadSample } from './protocol.ts';
import { sleep, summarize, type Summary } from './stats.ts';
import { sampleWaits } from './waits.ts';

export interface BenchContext {
  readonly adminUrl: string;
  readonly template: string;
  readonly log: (message: string) => void;
}

export interface CaseResult {
  readonly id: string;
  readonly name: string;
  /** The case whose rows/s this one's ratio divides by. */
  readonly reference?: string;
  readonly rows?: number;
  /** Median over the runs. */
  readonly seconds?: number;
  /** Median over the runs. */
  readonly rowsPerSecond?: number;
  ratio?: number;
  /** Milliseconds, every batch of every run. */
  readonly batches?: Summary;
  /** Median over the runs. */
  readonly walBytes?: number;
  readonly runs?: number;
  readonly notes?: string;
  /** Case 6c: the worker process's peak RSS (VmHWM) and peak anonymous memory. */
  readonly peakRssBytes?: number;
  readonly peakAnonBytes?: number;
}

export async function withCopy<T>(ctx: BenchContext, fn: (db: CaseDatabase) => Promise<T>): Promise<T> {
  const db = await copyOfTemplate(ctx.adminUrl, ctx.template);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

/** One run of a case. */
export interface Run {
  readonly rows: number;
  readonly ms: number;
  readonly walBytes: number;
  readonly batchMs?: readonly number[];
  readonly notes?: string;
  /** The worker task's own report, when the run was one. */
  readonly task?: PurgeRun;
}

type Timed = Omit<Run, 'walBytes'>;

export interface CaseSpec {
  readonly id: string;
  readonly name: string;
  readonly reference?: string;
  run(ctx: BenchContext): Promise<Run>;
}

/** Runs fn on a fresh copy and measures the WAL around it from a connection of its own. */
export async function measured(ctx: BenchContext, fn: (db: CaseDatabase) => Promise<Timed>): Promise<Run> {
  return withCopy(ctx, (db) =>
    withClient(db.url, async (probe) => {
      const walBefore = await walPosition(probe);
      const timed = await fn(db);
      return { ...timed, walBytes: (await walPosition(probe)) - walBefore };
    }),
  );
}

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};

/** The runs of one case as one line: medians of rows/s, seconds and WAL, batches pooled. */
export function aggregate(spec: CaseSpec, runs: readonly Run[]): CaseResult {
  const rates = runs.map((r) => r.rows / (r.ms / 1000));
  const batchMs = runs.flatMap((r) => r.batchMs ?? []);
  const batchRows = summarize(runs.flatMap((r) => r.task?.batches.map(([rows]) => rows) ?? []));
  const pooledHistogram = histogramNote(runs.flatMap((r) => (r.task && r.task.batches.length === 0 ? [r.task.histogram] : [])));
  const notes = [
    runs.length > 1 ? `runs: ${rates.map((r) => `${Math.round(r / 1000)}k`).join(', ')} rows/s` : '',
    batchRows.n > 0 ? `rows a batch p50 ${batchRows.p50}, max ${batchRows.max}` : '',
    ...new Set(runs.map((r) => r.notes ?? '').filter(Boolean)),
    pooledHistogram,
  ].filter(Boolean);
  return {
    id: spec.id,
    name: spec.name,
    ...(spec.reference === undefined ? {} : { reference: spec.reference }),
    rows: median(runs.map((r) => r.rows)),
    seconds: median(runs.map((r) => r.ms / 1000)),
    rowsPerSecond: median(rates),
    ...(batchMs.length > 0 ? { batches: summarize(batchMs) } : {}),
    walBytes: median(runs.map((r) => r.walBytes)),
    runs: runs.length,
    ...(notes.length > 0 ? { notes: notes.join('; ') } : {}),
  };
}

export async function oneStatement(db: CaseDatabase, text: string, values: unknown[] = []): Promise<Timed> {
  return withClient(db.url, async (client) => {
    const started = performance.now();
    const { rowCount } = await client.query(text, values);
    return { rows: rowCount ?? 0, ms: performance.now() - started };
  });
}

/** A statement repeated until it deletes nothing, timed one by one: a batched shape. */
async function loop(client: pg.Client, name: string, text: string): Promise<Timed> {
  const batchMs: number[] = [];
  let rows = 0;
  const started = performance.now();
  for (;;) {
    const t = performance.now();
    const { rowCount } = await client.query({ name, text });
    batchMs.push(performance.now() - t);
    if (!rowCount) break;
    rows += rowCount;
  }
  return { rows, ms: performance.now() - started, batchMs };
}

export const SINGLE_STATEMENT = 'DELETE FROM auth.refresh_session WHERE expires_at < now()';

export const singleStatement: CaseSpec = {
  id: '1',
  name: `single statement: \`${SINGLE_STATEMENT}\``,
  run: (ctx) => measured(ctx, (db) => oneStatement(db, SINGLE_STATEMENT)),
};

/** A shape of another product: one prepared statement repeated on one connection until it deletes nothing. */
const repeatedStatement = (id: string, name: string, statementName: string, text: string): CaseSpec => ({
  id,
  name,
  reference: '1',
  run: (ctx) => measured(ctx, (db) => withClient(db.url, (client) => loop(client, statementName, text))),
});

/** Ory Hydra's shape at its default batch of 100: IN (SELECT ... ORDER BY ... LIMIT 100). */
export const hydraShape = repeatedStatement(
  '2a',
  'Hydra shape: `id IN (SELECT id ... ORDER BY expires_at LIMIT 100)`, one statement a batch',
  'hydra',
  `DELETE FROM auth.refresh_session WHERE id IN (
     SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY expires_at LIMIT 100)`,
);

/** Supabase Auth's shape: 100 rows a statement, FOR UPDATE SKIP LOCKED, no ORDER BY. */
export const supabaseShape = repeatedStatement(
  '2b',
  'Supabase shape: `id IN (SELECT id ... LIMIT 100 FOR UPDATE SKIP LOCKED)`, one statement a batch',
  'supabase',
  `DELETE FROM auth.refresh_session WHERE id IN (
     SELECT id FROM auth.refresh_session WHERE expires_at < now() LIMIT 100 FOR UPDATE SKIP LOCKED)`,
);

/**
 * The worker's keyset range delete as raw SQL on one connection at a fixed batch of 5000, to
 * separate the effects that the worker's defaults combine (docs/performance.md, "What closed the
 * gap"): the shape before this change (one statement: bound CTE + DELETE ... RETURNING), the shape
 * now (bound SELECT, then DELETE without RETURNING), the latter with asynchronous commit, and that
 * without prepared statements.
 */
const STUDY_BATCH = 5000;
const STUDY_PURGEABLE = (lower: string) => `expires_at ${lower} $1::timestamptz AND expires_at < now()`;

async function keysetLoop(client: pg.Client, mode: 'returning' | 'two-statements', prepared = true): Promise<Timed> {
  // Unnamed statements are parsed and planned on every execution.
  const named = (name: string) => (prepared ? { name } : {});
  const batchMs: number[] = [];
  let rows = 0;
  let lower = '-infinity';
  let inclusive = true;
  const started = performance.now();
  for (;;) {
    const op = inclusive ? '>=' : '>';
    const t = performance.now();
    let bound: string | null;
    if (mode === 'returning') {
      const { rows: r } = await client.query<{ deleted: number; bound: string | null }>({
        ...named(`study_returning_${inclusive}`),
        text: `WITH bound AS MATERIALIZED (
                 SELECT expires_at FROM auth.refresh_session WHERE ${STUDY_PURGEABLE(op)} ORDER BY expires_at OFFSET $2::int - 1 LIMIT 1),
               gone AS (
                 DELETE FROM auth.refresh_session WHERE ${STUDY_PURGEABLE(op)}
                    AND expires_at <= coalesce((SELECT expires_at FROM bound), 'infinity') RETURNING 1)
               SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT expires_at::text FROM bound) AS bound`,
        values: [lower, STUDY_BATCH],
      });
      rows += r[0]?.deleted ?? 0;
      bound = r[0]?.bound ?? null;
    } else {
      const { rows: r } = await client.query<{ bound: string | null }>({
        ...named(`study_bound_${inclusive}`),
        text: `SELECT (SELECT expires_at FROM auth.refresh_session WHERE ${STUDY_PURGEABLE(op)} ORDER BY expires_at OFFSET $2::int - 1 LIMIT 1)::text AS bound`,
        values: [lower, STUDY_BATCH],
      });
      bound = r[0]?.bound ?? null;
      const { rowCount } = await client.query({
        ...named(`study_delete_${inclusive}`),
        text: `DELETE FROM auth.refresh_session WHERE ${STUDY_PURGEABLE(op)} AND expires_at <= $2::timestamptz`,
        values: [lower, bound ?? 'infinity'],
      });
      rows += rowCount ?? 0;
    }
    batchMs.push(performance.now() - t);
    if (bound === null) break;
    lower = bound;
    inclusive = false;
  }
  return { rows, ms: performance.now() - started, batchMs };
}

const study = (id: string, name: string, mode: 'returning' | 'two-statements', asyncCommit: boolean, prepared = true): CaseSpec => ({
  id,
  name,
  reference: '1',
  run: (ctx) =>
    measured(ctx, (db) =>
      withClient(db.url, async (client) => {
        if (asyncCommit) await client.query('SET synchronous_commit = off');
        return keysetLoop(client, mode, prepared);
      }),
    ),
});

export const STUDY_SHAPES: readonly CaseSpec[] = [
  study(
    '2c',
    'keyset range, one statement `WITH bound ..., gone AS (DELETE ... RETURNING 1)` (the shape before), 1 connection, 5000 a batch',
    'returning',
    false,
  ),
  study('2d', 'keyset range, bound `SELECT` then `DELETE` without RETURNING (the shape now), 1 connection, 5000 a batch', 'two-statements', false),
  study('2e', 'as 2d with synchronous_commit off, 1 connection, 5000 a batch', 'two-statements', true),
  study('2f', 'as 2e with unnamed statements (parsed and planned every time)', 'two-statements', true, false),
];

export const describeEnv = (env: Readonly<Record<string, string>>): string => {
  const shown = Object.entries(env).filter(([k]) => k !== 'SJ_BENCH_TASK');
  return shown.length === 0 ? 'worker defaults' : shown.map(([k, v]) => `${k}=${v}`).join(' ');
};

/** Batch durations from the task's onBatch reports (a task without them: see histogramNote). */
function batchFigures(run: PurgeRun): { batchMs?: number[] } {
  return run.batches.length > 0 ? { batchMs: run.batches.map(([, ms]) => ms) } : {};
}

/** For a task that reports no batches: p50 and p99 bounds from its histograms, summed over runs. */
function histogramNote(histograms: ReadonlyArray<PurgeRun['histogram']>): string {
  const first = histograms[0];
  if (first === undefined) return '';
  const summed = first.map(([le], i) => [le, histograms.reduce((sum, h) => sum + (h[i]?.[1] ?? 0), 0)] as const);
  const total = summed.find(([le]) => le === Number.POSITIVE_INFINITY)?.[1] ?? 0;
  if (total === 0) return '';
  const quantile = (q: number) => (summed.find(([, count]) => count >= q * total)?.[0] ?? Number.NaN) * 1000;
  return `batch durations from the histogram's buckets (${total} batches in all runs): p50 <= ${quantile(0.5)} ms, p99 <= ${quantile(0.99)} ms`;
}

/** A task of the worker, through its real code path, in a child process (purge-child.ts). */
export function workerTask(id: string, name: string, env: Readonly<Record<string, string>>, reference: string, request?: unknown): CaseSpec {
  return {
    id,
    name: `${name} (${describeEnv(env)})`,
    reference,
    run: (ctx) =>
      measured(ctx, async (db) => {
        const child = await forkPurge(db.url, env);
        const task = await child.run(request);
        const figures = batchFigures(task);
        return {
          rows: task.output.deleted,
          ms: task.elapsedMs,
          task,
          ...(figures.batchMs ? { batchMs: figures.batchMs } : {}),
          ...(env.SJ_BENCH_TASK === 'revoke' ? {} : { notes: `stopped by ${task.output.stoppedBy}` }),
        };
      }),
  };
}

export const IDLE_STATEMENT = `DELETE FROM auth.refresh_session WHERE last_used_at < now() - interval '${IDLE_DAYS} days'`;

export const idleStatement: CaseSpec = {
  id: '5-ref',
  name: `idle, one statement: \`${IDLE_STATEMENT}\``,
  run: (ctx) => measured(ctx, (db) => oneStatement(db, IDLE_STATEMENT)),
};

// ---------------------------------------------------------------------------------------------
// The refresh workload beside a purge.

export interface WorkloadFigures {
  readonly scenario: string;
  readonly latency: Summary;
  readonly failed: number;
  readonly seconds: number;
  /** The purge's own figures, when one ran (heldBackSeconds: per run, what held it back, summed over reasons). */
  readonly purge?: { readonly rows: number; readonly seconds: number; readonly batches: Summary; readonly heldBackSeconds?: number };
  /** Each run's p99 during the purge divided by its own p99 alone (the "during" line only). */
  readonly p99Ratios?: readonly number[];
}

const within = (samples: readonly WorkloadSample[], from: number, to: number) =>
  samples.filter(([completedAt, latency]) => completedAt - latency >= from && completedAt - latency < to);

interface WorkloadRun {
  readonly alone: readonly WorkloadSample[];
  readonly during: readonly WorkloadSample[];
  readonly aloneSeconds: number;
  readonly duringSeconds: number;
  readonly purge: { readonly rows: number; readonly seconds: number; readonly batchMs: readonly number[]; readonly heldBackSeconds: number };
}

/**
 * What runs beside the workload: the single statement, the worker's purge with these settings, or
 * only the latency guard's probe (tasks/latency-probe.ts) at its highest rate, one every
 * PROBE_INTERVAL_MS for probeSeconds, with nothing to purge: the guard's own cost.
 */
export type BesideWorkload = Readonly<Record<string, string>> | 'single-statement' | { readonly probeSeconds: number };

export interface WorkloadOptions {
  readonly rate: number;
  readonly clients: number;
  readonly aloneSeconds: number;
  readonly waitEvents: boolean;
  /** A rate that rises and falls instead of `rate` (bench/workload-child.ts). */
  readonly profile?: RateProfile;
}

/** The guard's probe, back to back at its interval, on a pool like the worker's, for ms. */
async function probeOnly(url: string, ms: number): Promise<{ probes: number; p50: number; p99: number }> {
  const pool = createPool({ connectionString: url, max: 1, statementTimeoutMs: 10_000, lockTimeoutMs: 200, applicationName: 'sj-bench-probe' });
  const probe = commitLatencyProbe(pool);
  const latencies: number[] = [];
  try {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      const started = performance.now();
      latencies.push(await probe());
      await sleep(Math.max(0, PROBE_INTERVAL_MS - (performance.now() - started)));
    }
  } finally {
    await pool.end();
  }
  const s = summarize(latencies);
  return { probes: s.n, p50: s.p50, p99: s.p99 };
}

/**
 * On one fresh copy: the workload alone for aloneSeconds, then the same workload while a purge
 * runs with purgeEnv (or the single statement); "during" is the transactions due while it ran.
 */
async function workloadRun(ctx: BenchContext, purgeEnv: BesideWorkload, options: WorkloadOptions): Promise<WorkloadRun> {
  return withCopy(ctx, async (db) => {
    const workload = await startWorkload(db.url, options.rate, options.clients, options.profile);
    const waits = options.waitEvents ? await sampleWaits(db.url) : undefined;
    try {
      await sleep(2000); // connections, plans and caches settle
      const aloneFrom = Date.now();
      await sleep(options.aloneSeconds * 1000);
      const aloneTo = Date.now();
      let from: number;
      let to: number;
      let purge: WorkloadRun['purge'];
      if (purgeEnv === 'single-statement') {
        from = Date.now();
        const timed = await oneStatement(db, SINGLE_STATEMENT);
        to = Date.now();
        purge = { rows: timed.rows, seconds: timed.ms / 1000, batchMs: [timed.ms], heldBackSeconds: 0 };
      } else if ('probeSeconds' in purgeEnv && typeof purgeEnv.probeSeconds === 'number') {
        from = Date.now();
        const probes = await probeOnly(db.url, purgeEnv.probeSeconds * 1000);
        to = Date.now();
        ctx.log(`  ${probes.probes} probes, p50 ${probes.p50.toFixed(2)} ms, p99 ${probes.p99.toFixed(2)} ms`);
        purge = { rows: 0, seconds: (to - from) / 1000, batchMs: [], heldBackSeconds: 0 };
      } else {
        const child = await forkPurge(db.url, purgeEnv as Readonly<Record<string, string>>);
        const run = await child.run();
        from = run.startedAt;
        to = run.endedAt;
        const heldBackSeconds = Object.values(run.heldBack?.heldBackSeconds ?? {}).reduce((a, b) => a + b, 0);
        purge = { rows: run.output.deleted, seconds: run.elapsedMs / 1000, batchMs: run.batches.map(([, ms]) => ms), heldBackSeconds };
        if (run.heldBack && run.heldBack.heldBackBatches > 0) {
          ctx.log(`  held back: ${run.heldBack.heldBackBatches} of ${run.output.batches} batches, ${JSON.stringify(run.heldBack.heldBackSeconds)} s`);
        }
      }
      // The workload alone again after the purge, so that the baseline surrounds the purge: the
      // machine's other load drifts over seconds, and a long (throttled) purge sees more of it.
      await sleep(500);
      const afterFrom = Date.now();
      await sleep((options.aloneSeconds * 1000) / 2);
      const afterTo = Date.now();
      const { samples, lateStarts } = await workload.stop();
      if (waits) {
        ctx.log(`  workload waits alone: ${waits.tally(aloneFrom, aloneTo)}`);
        ctx.log(`  workload waits during: ${waits.tally(from, to)}`);
      }
      if (lateStarts > 0) ctx.log(`  note: ${lateStarts} workload transactions started more than 5 ms late (client-side scheduling)`);
      return {
        alone: [...within(samples, aloneFrom, aloneTo), ...within(samples, afterFrom, afterTo)],
        during: within(samples, from, to),
        aloneSeconds: (aloneTo - aloneFrom + afterTo - afterFrom) / 1000,
        duringSeconds: (to - from) / 1000,
        purge,
      };
    } finally {
      await waits?.stop();
      workload.kill();
    }
  });
}

/**
 * repeat runs of workloadRun: the alone and the during figures of all runs' samples pooled (the
 * targets compare these), and each run's own ratio of p99s, to show how far one run alone scatters.
 */
export async function workloadBesidePurge(
  ctx: BenchContext,
  label: string,
  purgeEnv: BesideWorkload,
  options: WorkloadOptions & { readonly repeat: number },
): Promise<WorkloadFigures[]> {
  const runs: WorkloadRun[] = [];
  const rate = options.profile ? `${options.profile.low} to ${options.profile.high} and back every ${options.profile.periodSeconds} s` : `${options.rate}`;
  for (let i = 1; i <= options.repeat; i += 1) {
    ctx.log(`case 4, run ${i}/${options.repeat}: refresh workload at ${rate} tx/s, alone then beside ${label}`);
    const run = await workloadRun(ctx, purgeEnv, options);
    ctx.log(`  purge: ${run.purge.rows} rows in ${run.purge.seconds.toFixed(2)} s; ${run.during.length} transactions during it`);
    runs.push(run);
  }
  const p99 = (samples: readonly WorkloadSample[]) => summarize(samples.map(([, latency]) => latency)).p99;
  const figures = (scenario: string, samples: readonly WorkloadSample[], seconds: number, purge?: WorkloadFigures['purge']): WorkloadFigures => ({
    scenario,
    latency: summarize(samples.map(([, latency]) => latency)),
    failed: samples.filter(([, , , failed]) => failed).length,
    seconds,
    ...(purge ? { purge, p99Ratios: runs.map((r) => p99(r.during) / p99(r.alone)) } : {}),
  });
  const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);
  const result = [
    figures(
      `alone (around ${label})`,
      runs.flatMap((r) => r.alone),
      sum(runs.map((r) => r.aloneSeconds)),
    ),
    figures(
      `during ${label}`,
      runs.flatMap((r) => r.during),
      sum(runs.map((r) => r.duringSeconds)),
      {
        rows: sum(runs.map((r) => r.purge.rows)) / runs.length,
        seconds: sum(runs.map((r) => r.purge.seconds)) / runs.length,
        batches: summarize(runs.flatMap((r) => r.purge.batchMs)),
        heldBackSeconds: sum(runs.map((r) => r.purge.heldBackSeconds)) / runs.length,
      },
    ),
  ];
  for (const r of result) {
    ctx.log(
      `  ${r.scenario}: n=${r.latency.n} p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, max ${r.latency.max.toFixed(1)} ms` +
        (r.p99Ratios ? `; p99 ratio per run ${r.p99Ratios.map((x) => x.toFixed(2)).join(', ')}` : ''),
    );
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Held rows: an ORM's open transaction holds some expired rows in a savepoint while the purge runs.

/** Expired rows an open transaction of the auth service holds in a SAVEPOINT (the issue's figure). */
export const HELD_ROWS = 40;

/**
 * The purge for a time budget (JANITOR_MAX_RUN_SECONDS in env) while HELD_ROWS expired rows, spread
 * over the table, are locked inside a savepoint of an open transaction, with nobody else writing or
 * with writesPerSecond refreshes beside it (2 clients): the rows it deletes in its budget and what
 * it counted as held back. A lock wait writes no WAL and slows nobody's commit: guarded and
 * unguarded should delete alike.
 */
export function heldRowsTask(id: string, env: Readonly<Record<string, string>>, writesPerSecond: number, reference?: string): CaseSpec {
  return {
    id,
    name: `${HELD_ROWS} expired rows held in a savepoint, ${writesPerSecond > 0 ? `${writesPerSecond} refreshes/s beside` : 'nobody else writing'} (${describeEnv(env)})`,
    ...(reference === undefined ? {} : { reference }),
    run: (ctx) =>
      measured(ctx, (db) =>
        withClient(db.url, async (holder) => {
          await holder.query('BEGIN');
          await holder.query('SAVEPOINT orm');
          await holder.query(`SELECT id FROM auth.refresh_session WHERE expires_at < now() ORDER BY md5(id::text) LIMIT ${HELD_ROWS} FOR UPDATE`);
          const workload = writesPerSecond > 0 ? await startWorkload(db.url, writesPerSecond, 2) : undefined;
          try {
            if (workload) await sleep(2000); // the write counter's rate: the guard sees the writers from its first run
            const child = await forkPurge(db.url, env);
            const task = await child.run();
            const held = Object.entries(task.heldBack?.heldBackSeconds ?? {})
              .map(([reason, s]) => `${reason} ${s.toFixed(1)} s`)
              .join(', ');
            return {
              rows: task.output.deleted,
              ms: task.elapsedMs,
              task,
              ...batchFigures(task),
              notes: `stopped by ${task.output.stoppedBy}; held back: ${held || 'none'}`,
            };
          } finally {
            workload?.kill();
            await holder.query('ROLLBACK');
          }
        }),
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// The load stops during the purge: how soon the latency guard gives the speed back.

/**
 * The purge at its defaults beside `rate` refreshes a second that stop `afterSeconds` into it: the
 * milliseconds from the load's stop to the start of the first batch at the run's full size (the
 * guard's scale back at 1: full-size batches, no duty-cycle sleep); 'never' if none came, 'ended
 * first' if the purge was done before the load stopped (too few rows: SJ_BENCH_SESSIONS).
 */
export async function recoveryAfterLoadStops(
  ctx: BenchContext,
  rate: number,
  clients: number,
  afterSeconds: number,
  purgeEnv: Readonly<Record<string, string>> = {},
): Promise<number | 'never' | 'ended first'> {
  return withCopy(ctx, async (db) => {
    const workload = await startWorkload(db.url, rate, clients);
    try {
      await sleep(2000); // connections, plans and caches settle
      const child = await forkPurge(db.url, purgeEnv);
      const running = child.run();
      await sleep(afterSeconds * 1000);
      const stoppedAt = Date.now();
      await workload.stop();
      const run = await running;
      const full = Math.max(...run.batches.map(([rows]) => rows));
      const first = run.batches.find(([rows, ms, endedAt]) => endedAt - ms >= stoppedAt && rows >= full);
      const during = run.batches.filter(([, ms, endedAt]) => endedAt - ms < stoppedAt);
      ctx.log(
        `  ${during.length} batches while the load ran (largest ${Math.max(0, ...during.map(([rows]) => rows))} rows), ${run.batches.length - during.length} after; full size ${full} rows; ${run.output.deleted} rows in ${(run.elapsedMs / 1000).toFixed(1)} s`,
      );
      if (during.length === run.batches.length) return 'ended first';
      return first === undefined ? 'never' : first[2] - first[1] - stoppedAt;
    } finally {
      workload.kill();
    }
  });
}
