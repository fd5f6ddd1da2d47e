/**
 * `npm run bench`: the purge benchmark of docs/performance.md. A benchmark, not a test: it prints
 * figures and asserts nothing about speed.
 *
 * Environment:
 *   SJ_BENCH_SESSIONS        rows of the data set (default 2000000); develop with 100000
 *   SJ_TEST_PG               the embedded server's PostgreSQL major, 13 to 18 (default 18; as for npm test)
 *   SJ_BENCH_CASES           comma list of: single, shapes, purge, tables, tie, scattered, held, workload, guard, idle, revoke, revoke-memory, payload-memory (default all)
 *   SJ_BENCH_HELD_SECONDS    the held-rows case's time budget a run (default 20)
 *   SJ_BENCH_PURGE_VARIANTS  JSON array of extra JANITOR_* settings to run the purge with (default:
 *                            two lanes; synchronous commit; 20,000-row batches), e.g.
 *                            '[{"JANITOR_PURGE_CONCURRENCY":"1"},{"JANITOR_BATCH_TARGET_MS":"10"}]'
 *   SJ_BENCH_IDLE_VARIANTS   JSON array of extra settings to run the reaper (case 5) with (default
 *                            none), e.g. '[{"JANITOR_BATCH_MAX_SIZE":"50000"}]'
 *   SJ_BENCH_REVOKE_VARIANTS JSON array of extra settings to run revoke() (case 6a) with (default:
 *                            one connection), e.g. '[{"SJ_BENCH_REVOKE_IDS":"500"},{"SJ_BENCH_REVOKE_LANES":"1"}]'
 *                            (SJ_BENCH_REVOKE_IDS: users a statement; SJ_BENCH_REVOKE_LANES: connections at most)
 *   SJ_BENCH_REPEAT          runs of each of cases 1, 2, 3 and 5, interleaved; the median is reported (default 3)
 *   SJ_BENCH_THROTTLE_ENV    JSON object: the throttled purge of case 4 (default below)
 *   SJ_BENCH_WORKLOAD_EXTRA  JSON array of further purge settings to run beside the workload
 *                            (default: the latency guard off, i.e. the purge at full speed), e.g.
 *                            '[{"JANITOR_PURGE_CONCURRENCY":"2"},{"JANITOR_PURGE_BATCH_MAX_SIZE":"20000"}]'
 *   SJ_BENCH_GUARD_PROFILE   JSON: the rising and falling load of the guard case (default
 *                            {"low":100,"high":800,"periodSeconds":8}); the workload runs two periods
 *                            alone before the purge and one after it
 *   SJ_BENCH_WORKLOAD_RATE   refresh transactions a second (default 500)
 *   SJ_BENCH_WORKLOAD_SECONDS  seconds of workload alone before each purge (default 10)
 *   SJ_BENCH_WORKLOAD_REPEAT runs (fresh copies) of each scenario of case 4, samples pooled (default 5)
 *   SJ_BENCH_WAIT_EVENTS     1: sample what the workload's backends wait on, alone and during (bench/waits.ts)
 *   SJ_BENCH_REVOKE_RATE     single-user revocations a second in case 6b (default 10), for
 *   SJ_BENCH_REVOKE_SECONDS  seconds (default 30)
 *   SJ_BENCH_SERVER_SETTINGS JSON object of settings for the embedded server over bench/server.ts's,
 *                            e.g. '{"wal_compression":"pglz"}' (the embedded binaries have no lz4)
 *   SJ_BENCH_WORKER_NODE_OPTIONS  NODE_OPTIONS of the worker processes of cases 6b and 6c (default: none)
 *   DATABASE_URL             a server to use instead of the embedded one (needs CREATE DATABASE)
 */
import { cpus, totalmem } from 'node:os';
import { createBoss } from '../src/boss.ts';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { install } from '../src/install.ts';
import { createLogger } from '../src/logger.ts';
import { QUEUES } from '../src/queues.ts';
import {
  aggregate,
  describeEnv,
  heldRowsTask,
  hydraShape,
  recoveryAfterLoadStops,
  idleStatement,
  singleStatement,
  STUDY_SHAPES,
  supabaseShape,
  workerTask,
  workloadBesidePurge,
  type BenchContext,
  type CaseResult,
  type CaseSpec,
  type Run,
  type WorkloadFigures,
} from './cases.ts';
import { buildScatteredTemplate, buildTemplate, buildTieTemplate, SCATTERED_TEMPLATE, TEMPLATE, TIE_TEMPLATE } from './dataset.ts';
import { amplifiedPayloadMemory, revocationMemory, revocationSpecs, singleUserRevocations } from './revoke.ts';
import { markdown, writeResults, type Results, type Target } from './report.ts';
import { serverSettings, startServer } from './server.ts';
import { formatBytes } from './stats.ts';

/**
 * The throttle shown in case 4 unless SJ_BENCH_THROTTLE_ENV says otherwise: batches a quarter of
 * the time, and of 1000 rows (about 0.3 MB of WAL with full-page images) each, since the refreshes'
 * commits during and after a batch have to flush its WAL (docs/performance.md, "Throttle").
 */
const DEFAULT_THROTTLE: Readonly<Record<string, string>> = {
  JANITOR_PURGE_DUTY_CYCLE: '25',
  JANITOR_BATCH_SIZE: '1000',
  JANITOR_BATCH_MAX_SIZE: '1000',
  // The fixed throttle alone, as it was measured before the guard (with the guard on as well, the
  // purge took 26-33 s instead of 4-9 for the same 1.1-1.2x).
  JANITOR_LATENCY_GUARD: 'off',
};
/**
 * Also beside the workload by default: the purge without its latency guard (at full speed), the
 * reason the guard is on. (Two lanes and 20,000-row batches, the reasons for one lane and the
 * 5000-row cap, through SJ_BENCH_WORKLOAD_EXTRA: docs/performance.md.)
 */
const DEFAULT_WORKLOAD_EXTRA = [{ JANITOR_LATENCY_GUARD: 'off' }];
/**
 * The cases that measure the latency guard itself. Their backlog is days old (bench/dataset.ts): at
 * the default JANITOR_PURGE_FRESHNESS_OBJECTIVE (1h) the guard would stand aside from the first
 * batch on, which is what case 4's "past the freshness objective" line measures.
 */
const GUARD_ALONE: Readonly<Record<string, string>> = { JANITOR_PURGE_FRESHNESS_OBJECTIVE: 'off' };
const GUARDED = 'the purge with its latency guard alone (JANITOR_PURGE_FRESHNESS_OBJECTIVE=off)';
const PAST_OBJECTIVE = 'the purge at the worker defaults, its backlog days old (past the freshness objective)';
const GUARDED_RISING = `${GUARDED}, the load rising and falling`;
const GUARDED_TIE = `${GUARDED}, mass-logout tie`;

/** A case run on a copy of another template (the tie's, the scattered one's), named after it. */
const onTemplate =
  (templateCtx: BenchContext, what: string) =>
  (spec: CaseSpec, id: string, reference?: string): CaseSpec => ({
    id,
    name: `${what}: ${spec.name}`,
    ...(reference === undefined ? {} : { reference }),
    run: () => spec.run(templateCtx),
  });
/** The guard case's load-stop run: the load stops this long into the purge (long enough for the guard to have held back). */
const RECOVERY_AFTER_SECONDS = 3;
/** The guard case's load: a triangle from 100 to 800 refreshes a second and back, every 8 s. */
const DEFAULT_GUARD_PROFILE = { low: 100, high: 800, periodSeconds: 8 };

const env = process.env;
const sessions = Number(env.SJ_BENCH_SESSIONS ?? 2_000_000);
const selected = new Set(
  (env.SJ_BENCH_CASES ?? 'single,shapes,purge,tables,tie,scattered,held,workload,guard,idle,revoke,revoke-memory,payload-memory')
    .split(',')
    .map((s) => s.trim()),
);
/** The worker with one change each, to show what each default is worth (docs/performance.md). */
const DEFAULT_VARIANTS = [
  { JANITOR_PURGE_CONCURRENCY: '2' },
  { JANITOR_PURGE_ASYNC_COMMIT: 'false' },
  { JANITOR_PURGE_BATCH_MAX_SIZE: '20000' },
  { JANITOR_LATENCY_GUARD: 'off' },
];
const variants = JSON.parse(env.SJ_BENCH_PURGE_VARIANTS ?? JSON.stringify(DEFAULT_VARIANTS)) as Array<Record<string, string>>;
const workloadExtra = JSON.parse(env.SJ_BENCH_WORKLOAD_EXTRA ?? JSON.stringify(DEFAULT_WORKLOAD_EXTRA)) as Array<Record<string, string>>;
const guardProfile = JSON.parse(env.SJ_BENCH_GUARD_PROFILE ?? JSON.stringify(DEFAULT_GUARD_PROFILE)) as { low: number; high: number; periodSeconds: number };
const throttleEnv = JSON.parse(env.SJ_BENCH_THROTTLE_ENV ?? JSON.stringify(DEFAULT_THROTTLE)) as Record<string, string>;
const idleVariants = JSON.parse(env.SJ_BENCH_IDLE_VARIANTS ?? '[]') as Array<Record<string, string>>;
/** revoke() on one connection: what the second one is worth (docs/performance.md). */
const DEFAULT_REVOKE_VARIANTS = [{ SJ_BENCH_REVOKE_LANES: '1' }];
const revokeVariants = JSON.parse(env.SJ_BENCH_REVOKE_VARIANTS ?? JSON.stringify(DEFAULT_REVOKE_VARIANTS)) as Array<Record<string, string>>;
const repeat = Number(env.SJ_BENCH_REPEAT ?? 3);
const revokeRate = Number(env.SJ_BENCH_REVOKE_RATE ?? 10);
const revokeSeconds = Number(env.SJ_BENCH_REVOKE_SECONDS ?? 30);
const workloadOptions = {
  rate: Number(env.SJ_BENCH_WORKLOAD_RATE ?? 500),
  clients: 8,
  aloneSeconds: Number(env.SJ_BENCH_WORKLOAD_SECONDS ?? 10),
  repeat: Number(env.SJ_BENCH_WORKLOAD_REPEAT ?? 5),
  waitEvents: env.SJ_BENCH_WAIT_EVENTS === '1',
};
if (!Number.isInteger(sessions) || sessions < 1000) throw new Error(`SJ_BENCH_SESSIONS=${env.SJ_BENCH_SESSIONS} must be an integer of at least 1000`);

const began = performance.now();
const startedAt = new Date().toISOString();
const log = (message: string) => process.stderr.write(`[bench ${((performance.now() - began) / 1000).toFixed(1).padStart(6)}s] ${message}\n`);
const command = [
  ...Object.entries(env)
    .filter(([k]) => k.startsWith('SJ_BENCH_') || k === 'SJ_TEST_PG')
    .map(([k, v]) => `${k}=${v?.includes(' ') || v?.includes('{') ? `'${v}'` : v}`),
  'npm run bench',
].join(' ');

const server = await startServer(log);
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await server.stop().catch((error: unknown) => log(`stopping the server failed: ${String(error)}`));
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping`);
    void stop().then(() => process.exit(130));
  });
}

try {
  const settings = await serverSettings(server.adminUrl);
  log(`server: ${settings.version}`);
  log(
    `settings: ${Object.entries(settings)
      .filter(([k]) => k !== 'version')
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
  log(`building the template: ${sessions.toLocaleString('en')} sessions`);
  const notes: string[] = [];
  const dataSet = await buildTemplate(server.adminUrl, sessions, async (url) => {
    // pg-boss's schema, the worker's schema and the queues: the revocation and reaper cases need them.
    try {
      const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' });
      const quiet = createLogger('silent');
      const pool = createPool({ connectionString: url, max: 2, statementTimeoutMs: 0, lockTimeoutMs: 0 });
      const boss = createBoss(config, url, { role: 'tool', migrate: true }, quiet);
      try {
        await boss.start();
        await install(boss, pool, config, quiet, true);
        // Copies of a template with schedules would run a catch-up purge when a worker starts (6b).
        for (const queue of [QUEUES.purgeExpired, QUEUES.reapIdle]) await boss.unschedule(queue);
      } finally {
        await boss.stop({ graceful: false }).catch(() => undefined);
        await pool.end();
      }
    } catch (error) {
      notes.push(`installing pg-boss and the worker's schema into the template failed: ${error instanceof Error ? error.message : String(error)}`);
      log(`install failed: ${String(error)}`);
    }
  });
  log(
    `template: ${dataSet.expired} expired, ${dataSet.idle} idle, heap ${formatBytes(dataSet.tableBytes)}, indexes ${formatBytes(dataSet.indexBytes)}, ${dataSet.buildSeconds.toFixed(1)} s`,
  );
  const ctx: BenchContext = { adminUrl: server.adminUrl, template: TEMPLATE, log };
  const cases: CaseResult[] = [];
  const workload: WorkloadFigures[] = [];
  let purgeRss: Results['purgeRss'] = null;

  // Cases 1, 2, 3 and 5 in interleaved rounds (1, 2a, 2b, 3, ..., then again), each run on a fresh
  // copy: a slow minute on the machine touches every case alike, and each line is the median run.
  const specs: CaseSpec[] = [];
  if (selected.has('single')) specs.push(singleStatement);
  if (selected.has('shapes')) specs.push(hydraShape, supabaseShape, ...STUDY_SHAPES);
  if (selected.has('purge')) {
    specs.push(workerTask('3', 'the worker: purgeExpired()', {}, '1'));
    // A process's first run (every CLI run, a pod's first tick): its latency guard has no reading
    // of the write counter yet (purge-child.ts, SJ_BENCH_FIRST_RUN).
    specs.push(workerTask('3f', "a process's first run (the CLI's): purgeExpired()", { SJ_BENCH_FIRST_RUN: '1' }, '1'));
    for (const [i, variant] of variants.entries()) specs.push(workerTask(`3.${i + 1}`, 'the worker: purgeExpired()', variant, '1'));
  }
  if (selected.has('tables')) {
    // Case E: the sessions purge while 8 empty tables of JANITOR_PURGE_TABLES are purged at the same
    // tick (each its own run, lane and guard), against case 3 alone: the extra tables must cost it nothing.
    if (!selected.has('purge')) specs.push(workerTask('3', 'the worker: purgeExpired()', {}, '1'));
    specs.push(workerTask('E', 'the worker: purgeExpired() beside 8 empty extra tables', { SJ_BENCH_EXTRA_TABLES: '8' }, '3'));
  }
  if (selected.has('idle')) {
    const reap = { SJ_BENCH_TASK: 'reap-idle', JANITOR_IDLE_TIMEOUT: '14d', JANITOR_MAX_RUN_SECONDS: '86400' };
    specs.push(
      idleStatement,
      workerTask('5', 'the worker: reapIdle(), one full pass', reap, '5-ref'),
      ...idleVariants.map((variant, i) => workerTask(`5.${i + 1}`, 'the worker: reapIdle(), one full pass', { ...reap, ...variant }, '5-ref')),
    );
  }
  // Case T: the mass-logout shape (every expired session on one expires_at), on a copy of its own
  // template: the single statement, then the worker, whose batches must stay at their cap.
  const tieCtx: BenchContext = { ...ctx, template: TIE_TEMPLATE };
  if (selected.has('tie')) {
    log(`tie template: ${(await buildTieTemplate(server.adminUrl)).toLocaleString('en')} sessions on one expires_at`);
    const onTie = onTemplate(tieCtx, 'mass logout, every expired session on one instant');
    specs.push(onTie(singleStatement, 'T-ref'), onTie(workerTask('T', 'the worker: purgeExpired()', {}, 'T-ref'), 'T', 'T-ref'));
  }
  if (selected.has('scattered')) {
    // Case S: the same rows in random heap order (a table's layout after months of reuse), on a copy
    // of its own template: the single statement, then the worker.
    const layout = await buildScatteredTemplate(server.adminUrl);
    log(`scattered template: expired rows on ${layout.pagesWithExpired.toLocaleString('en')} of ${layout.pages.toLocaleString('en')} heap pages`);
    const onScattered = onTemplate({ ...ctx, template: SCATTERED_TEMPLATE }, 'rows in random heap order');
    specs.push(onScattered(singleStatement, 'S-ref'), onScattered(workerTask('S', 'the worker: purgeExpired()', {}, 'S-ref'), 'S', 'S-ref'));
  }
  if (selected.has('held')) {
    // Case H: rows held in a savepoint, guarded against unguarded, with nobody writing and beside 25 refreshes/s.
    const budget = { JANITOR_MAX_RUN_SECONDS: env.SJ_BENCH_HELD_SECONDS ?? '20' };
    const off = { ...budget, JANITOR_LATENCY_GUARD: 'off' };
    const guarded = { ...budget, ...GUARD_ALONE };
    specs.push(
      heldRowsTask('H-off', off, 0),
      heldRowsTask('H', guarded, 0, 'H-off'),
      heldRowsTask('H25-off', off, 25),
      heldRowsTask('H25', guarded, 25, 'H25-off'),
    );
  }
  if (selected.has('revoke')) specs.push(...revocationSpecs(dataSet.users, revokeVariants));
  const runs = new Map<string, Run[]>(specs.map((s) => [s.id, []]));
  for (let round = 1; round <= repeat; round += 1) {
    for (const spec of specs) {
      log(`case ${spec.id}, run ${round}/${repeat}: ${spec.name}`);
      const run = await spec.run(ctx);
      log(`  ${run.rows} rows in ${(run.ms / 1000).toFixed(3)} s, ${Math.round(run.rows / (run.ms / 1000))} rows/s, WAL ${formatBytes(run.walBytes)}`);
      runs.get(spec.id)?.push(run);
    }
  }
  for (const spec of specs) cases.push(aggregate(spec, runs.get(spec.id) ?? []));
  const purgeRuns = (runs.get('3') ?? []).flatMap((r) => (r.task ? [r.task] : []));
  if (purgeRuns.length > 0) {
    purgeRss = {
      maxRssBytes: Math.max(...purgeRuns.map((t) => t.maxRssBytes)),
      rssSampledMaxBytes: Math.max(...purgeRuns.map((t) => t.rssSampledMaxBytes)),
    };
  }
  if (selected.has('revoke')) cases.push(await singleUserRevocations(ctx, dataSet.users, revokeRate, revokeSeconds));
  if (selected.has('revoke-memory')) cases.push(await revocationMemory(ctx, loadConfig({ LOG_LEVEL: 'silent' }).revokeConcurrency));
  if (selected.has('payload-memory')) cases.push(await amplifiedPayloadMemory(ctx));
  if (selected.has('workload')) {
    workload.push(...(await workloadBesidePurge(ctx, 'the single statement', 'single-statement', workloadOptions)));
    workload.push(...(await workloadBesidePurge(ctx, GUARDED, GUARD_ALONE, workloadOptions)));
    workload.push(...(await workloadBesidePurge(ctx, PAST_OBJECTIVE, {}, workloadOptions)));
    workload.push(...(await workloadBesidePurge(ctx, `the throttled purge (${describeEnv(throttleEnv)})`, throttleEnv, workloadOptions)));
    for (const extra of workloadExtra) workload.push(...(await workloadBesidePurge(ctx, `the purge with ${describeEnv(extra)}`, extra, workloadOptions)));
  }

  if (selected.has('tie')) {
    workload.push(...(await workloadBesidePurge(tieCtx, 'the single statement, mass-logout tie', 'single-statement', workloadOptions)));
    workload.push(...(await workloadBesidePurge(tieCtx, GUARDED_TIE, GUARD_ALONE, workloadOptions)));
  }

  /** Milliseconds from the load's stop to the first full-size batch, per run (or why none came). */
  const recoveries: Array<number | string> = [];
  if (selected.has('guard')) {
    // The load rises and falls during the purge at its defaults: two periods alone before it, one after.
    const rising = { ...workloadOptions, profile: guardProfile, aloneSeconds: 2 * guardProfile.periodSeconds };
    workload.push(...(await workloadBesidePurge(ctx, GUARDED_RISING, GUARD_ALONE, rising)));
    // The guard's own cost: its probe at its highest rate, with nothing to purge.
    const probeSeconds = workloadOptions.aloneSeconds;
    workload.push(...(await workloadBesidePurge(ctx, "the latency guard's probe alone, every 200 ms", { probeSeconds }, workloadOptions)));
    // The load stops during the purge: how soon the guard is back at full speed (the issue's target: 2 s).
    for (let round = 1; round <= workloadOptions.repeat; round += 1) {
      log(`the load stops ${RECOVERY_AFTER_SECONDS} s into the purge, run ${round}/${workloadOptions.repeat}`);
      const ms = await recoveryAfterLoadStops(ctx, workloadOptions.rate, workloadOptions.clients, RECOVERY_AFTER_SECONDS, GUARD_ALONE);
      log(`  back at full speed: ${typeof ms === 'number' ? `${Math.round(ms)} ms after the load stopped` : ms}`);
      recoveries.push(ms);
    }
    notes.push(
      `the load (${workloadOptions.rate} refreshes/s) stopped ${RECOVERY_AFTER_SECONDS} s into the purge at its defaults: back at full-size batches ${recoveries.map((ms) => (typeof ms === 'number' ? `${Math.round(ms)} ms` : ms)).join(', ')} after it stopped`,
    );
  }

  for (const c of cases) {
    const reference = cases.find((r) => r.id === c.reference);
    if (c.rowsPerSecond !== undefined && reference?.rowsPerSecond !== undefined) c.ratio = c.rowsPerSecond / reference.rowsPerSecond;
  }
  const targets = evaluate(cases, workload, purgeRss, recoveries);
  const results: Results = {
    command,
    startedAt,
    seconds: (performance.now() - began) / 1000,
    machine: `${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${Math.round(totalmem() / 1024 ** 3)} GB; node ${process.version}; ${server.embedded ? 'embedded PostgreSQL on the same machine' : 'DATABASE_URL'}`,
    settings,
    dataSet,
    cases,
    workload,
    purgeRss,
    targets,
    notes,
  };
  const files = await writeResults(results);
  process.stdout.write(markdown(results));
  log(`results: ${files.md} and ${files.json}`);
} finally {
  await stop();
}

function evaluate(
  cases: readonly CaseResult[],
  workload: readonly WorkloadFigures[],
  rss: Results['purgeRss'],
  recoveries: ReadonlyArray<number | string>,
): Target[] {
  const byId = (id: string) => cases.find((c) => c.id === id);
  const purge = byId('3');
  const ratio = (c: CaseResult | undefined, min: number, what: string): Target =>
    c?.ratio === undefined ? { target: what, figure: 'not run', met: null } : { target: what, figure: `${c.ratio.toFixed(2)}`, met: c.ratio >= min };
  const alone = workload.find((w) => w.scenario === `alone (around ${GUARDED})`);
  const full = workload.find((w) => w.scenario === `during ${GUARDED}`);
  const pastAlone = workload.find((w) => w.scenario === `alone (around ${PAST_OBJECTIVE})`);
  const past = workload.find((w) => w.scenario === `during ${PAST_OBJECTIVE}`);
  const unguardedAlone = workload.find((w) => w.scenario === 'alone (around the purge with JANITOR_LATENCY_GUARD=off)');
  const unguarded = workload.find((w) => w.scenario === 'during the purge with JANITOR_LATENCY_GUARD=off');
  const risingAlone = workload.find((w) => w.scenario === `alone (around ${GUARDED_RISING})`);
  const rising = workload.find((w) => w.scenario === `during ${GUARDED_RISING}`);
  const probeAlone = workload.find((w) => w.scenario.startsWith("alone (around the latency guard's probe"));
  const probe = workload.find((w) => w.scenario.startsWith("during the latency guard's probe"));
  const throttledAlone = workload.find((w) => w.scenario.startsWith('alone (around the throttled'));
  const throttled = workload.find((w) => w.scenario.startsWith('during the throttled'));
  const p99Ratio = (a: WorkloadFigures | undefined, b: WorkloadFigures | undefined, max: number, what: string): Target => {
    if (a === undefined || b === undefined) return { target: what, figure: 'not run', met: null };
    // The p99 of every run's transactions pooled: a full-speed purge lasts about half a second,
    // so one run's "during" holds some 300 transactions and its p99 is their 3rd worst, which one
    // noisy moment of the machine decides (per-run ratios of one scenario spread from 0.1 to 21
    // in one run of the bench). Five runs pooled make it the 12th-19th worst of 1,100-1,900.
    const ratio = b.latency.p99 / a.latency.p99;
    const purge = b.purge && b.purge.rows > 0 ? `; the purge beside it: ${Math.round(b.purge.rows / b.purge.seconds).toLocaleString('en')} rows/s` : '';
    return {
      target: what,
      figure:
        `${ratio.toFixed(2)}x (p99 of all runs pooled: ${b.latency.p99.toFixed(2)} ms over ${b.latency.n} transactions, ` +
        `against ${a.latency.p99.toFixed(2)} ms alone; each run's own ratio ${(b.p99Ratios ?? []).map((x) => x.toFixed(2)).join(', ')}${purge})`,
      met: ratio <= max,
    };
  };
  /** The purge's rows/s beside the workload in b against a, and what the refreshes paid (b's p99 against bAlone's: the trade, no bound). */
  const beside = (b: WorkloadFigures | undefined, bAlone: WorkloadFigures | undefined, a: WorkloadFigures | undefined, min: number, what: string): Target => {
    const rate = (w: WorkloadFigures | undefined) => (w?.purge && w.purge.seconds > 0 ? w.purge.rows / w.purge.seconds : undefined);
    const [rb, ra] = [rate(b), rate(a)];
    if (b === undefined || bAlone === undefined || rb === undefined || ra === undefined) return { target: what, figure: 'not run', met: null };
    return {
      target: what,
      figure: `${(rb / ra).toFixed(2)} (${Math.round(rb).toLocaleString('en')} against ${Math.round(ra).toLocaleString('en')} rows/s; the refreshes' p99 during it ${(b.latency.p99 / bAlone.latency.p99).toFixed(2)}x alone, pooled)`,
      met: rb / ra >= min,
    };
  };
  const tie = byId('T');
  const tieAlone = workload.find((w) => w.scenario === `alone (around ${GUARDED_TIE})`);
  const tieDuring = workload.find((w) => w.scenario === `during ${GUARDED_TIE}`);
  const single = cases.find((c) => c.id === '6b');
  // The guarded purge beside the load against the same purge with nobody writing (case 3).
  const besideShare = (): Target => {
    const what = "beside the load: the guarded purge's rows/s >= 0.25 of its rows/s with nobody writing (case 3)";
    const idle = purge?.rowsPerSecond;
    const during = full?.purge && full.purge.seconds > 0 ? full.purge.rows / full.purge.seconds : undefined;
    if (idle === undefined || during === undefined) return { target: what, figure: 'not run', met: null };
    return {
      target: what,
      figure: `${(during / idle).toFixed(2)} (${Math.round(during).toLocaleString('en')} against ${Math.round(idle).toLocaleString('en')} rows/s)`,
      met: during / idle >= 0.25,
    };
  };
  const recovery: Target = {
    target: 'the load stops: the guarded purge back at full-size batches within 2 s, every run',
    figure: recoveries.length === 0 ? 'not run' : recoveries.map((r) => (typeof r === 'number' ? `${(r / 1000).toFixed(2)} s` : r)).join(', '),
    // A run that drained before the load stopped shows nothing either way; one whose batches never came back fails.
    met:
      recoveries.length === 0
        ? null
        : recoveries.some((r) => typeof r === 'number') && recoveries.every((r) => r === 'ended first' || (typeof r === 'number' && r < 2000)),
  };
  const memory = cases.find((c) => c.id === '6c');
  return [
    ratio(purge, 0.9, 'purge rows/s vs single statement >= 0.9 (defaults: latency guard on; no foreground load)'),
    ratio(byId('3f'), 0.9, "a process's first run (every CLI run) vs single statement >= 0.9 (defaults; no foreground load)"),
    purge?.batches
      ? { target: 'purge batch p99 <= 50 ms', figure: `${purge.batches.p99.toFixed(1)} ms`, met: purge.batches.p99 <= 50 }
      : { target: 'purge batch p99 <= 50 ms', figure: 'not run', met: null },
    p99Ratio(alone, full, 1.3, 'refresh p99 during the purge with its latency guard <= 1.3x alone'),
    besideShare(),
    p99Ratio(risingAlone, rising, 1.3, 'refresh p99 during the purge with its latency guard, the load rising and falling, <= 1.3x alone'),
    recovery,
    beside(
      past,
      pastAlone,
      unguarded,
      0.9,
      'freshness floor: the purge past its objective beside the load, rows/s vs the purge without its guard beside it >= 0.9',
    ),
    p99Ratio(probeAlone, probe, 1.1, "refresh p99 beside the guard's probe alone (the purge idle): no measurable change (<= 1.1x)"),
    p99Ratio(unguardedAlone, unguarded, 2, 'refresh p99 during the purge without its guard (full speed) <= 2x alone'),
    p99Ratio(throttledAlone, throttled, 1.3, 'refresh p99 during the throttled purge <= 1.3x alone'),
    ratio(tie, 0.9, 'mass-logout tie: purge rows/s vs single statement >= 0.9'),
    tie?.batches
      ? { target: 'mass-logout tie: purge batch p99 <= 50 ms', figure: `${tie.batches.p99.toFixed(1)} ms`, met: tie.batches.p99 <= 50 }
      : { target: 'mass-logout tie: purge batch p99 <= 50 ms', figure: 'not run', met: null },
    p99Ratio(tieAlone, tieDuring, 1.3, 'mass-logout tie: refresh p99 during the purge at its defaults <= 1.3x alone'),
    ratio(byId('H'), 0.9, 'held rows (a savepoint holds some), nobody writing: rows the guarded purge deletes vs unguarded >= 0.9'),
    ratio(byId('H25'), 0.9, 'held rows, 25 refreshes/s beside: rows the guarded purge deletes vs unguarded >= 0.9'),
    ratio(byId('S'), 0.9, 'rows in random heap order: purge rows/s vs single statement >= 0.9'),
    ratio(byId('5'), 0.9, 'idle full pass vs one statement >= 0.9'),
    ratio(byId('6a'), 0.7, 'revoking 10,000 users vs one statement >= 0.7'),
    single?.batches
      ? { target: 'single-user revocation p99 <= 1 s (enqueue to rows gone)', figure: `${single.batches.p99.toFixed(0)} ms`, met: single.batches.p99 <= 1000 }
      : { target: 'single-user revocation p99 <= 1 s (enqueue to rows gone)', figure: 'not run', met: null },
    rss
      ? { target: 'worker peak RSS <= 150 MB', figure: formatBytes(rss.maxRssBytes), met: rss.maxRssBytes <= 150 * 1024 ** 2 }
      : { target: 'worker peak RSS <= 150 MB', figure: 'not run', met: null },
    memory?.peakRssBytes
      ? {
          target: 'worker peak RSS with max-size revocations < 256 MiB (production limit)',
          figure: formatBytes(memory.peakRssBytes),
          met: memory.peakRssBytes < 256 * 1024 ** 2,
        }
      : { target: 'worker peak RSS with max-size revocations < 256 MiB (production limit)', figure: 'not run', met: null },
  ];
}
