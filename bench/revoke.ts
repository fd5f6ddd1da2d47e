/**
 * Case 6, revocation:
 *   6a   revoke() of src/tasks/revoke.ts (what the revoke job's handler calls) on 10,000 random users
 *        in one request, against 6a-ref, one `DELETE ... WHERE user_id = ANY($1)` of the same users;
 *   6b   single-user revocations at a steady rate through pg-boss, end to end: a real worker process
 *        (`session-janitor start`) on the case's database, each revocation enqueued with
 *        enqueueRevocation() of src/client.ts (the SQL function session_janitor.enqueue_revocation),
 *        timed from the enqueue call until the user's rows are gone (polled every 10 ms);
 *   6c   memory: a worker process with the default JANITOR_REVOKE_CONCURRENCY given twice that many
 *        requests of the contract's maximum size (100,000 jtis each) at once; the worker's peak RSS
 *        (VmHWM) and peak anonymous memory (RssAnon, sampled every 20 ms) against the production
 *        overlay's 256 MiB limit (docs/performance.md);
 *   6d   amplified payloads (issue 25.1): a worker with the production flags of k8s/base
 *        (PRODUCTION_NODE_OPTIONS) given 1, 2 and 4 payloads of 5 MB of small values (1,240,000
 *        empty objects: 4,960,037 bytes) inserted straight into pgboss.job (the SQL functions refuse
 *        them), then 4 valid payloads at the contract's maximum (100,000 jtis) at once: its peak RSS
 *        in each scenario, whether it is still alive, and how many dead-letter copies each invalid
 *        job has (one).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { enqueueRevocation } from '../src/client.ts';
import { measured, oneStatement, withCopy, workerTask, type BenchContext, type CaseResult, type CaseSpec } from './cases.ts';
import { sleep, summarize } from './stats.ts';

/** n distinct user ids from 1..users, the same for a given seed (a small LCG). */
export function sampleUsers(users: number, n: number, seed: number): number[] {
  let state = seed >>> 0;
  const next = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const picked = new Set<number>();
  while (picked.size < Math.min(n, users)) picked.add(1 + Math.floor(next() * users));
  return [...picked];
}

/**
 * 6a-ref and 6a, then 6a.1, 6a.2, ... with each variant's settings (SJ_BENCH_REVOKE_IDS,
 * SJ_BENCH_REVOKE_LANES, JANITOR_*): run in the benchmark's rounds like cases 1, 2, 3 and 5.
 */
export function revocationSpecs(users: number, variants: ReadonlyArray<Readonly<Record<string, string>>> = []): CaseSpec[] {
  const count = Math.min(10_000, Math.floor(users / 20));
  const userIds = sampleUsers(users, count, 7);
  const statement = 'DELETE FROM auth.refresh_session WHERE user_id = ANY($1::int[])';
  return [
    {
      id: '6a-ref',
      name: `revoke ${count.toLocaleString('en')} random users, one statement: \`${statement}\``,
      run: (ctx) => measured(ctx, (db) => oneStatement(db, statement, [userIds])),
    },
    ...[{}, ...variants].map((variant, i) =>
      workerTask(
        i === 0 ? '6a' : `6a.${i}`,
        `the worker: revoke() of ${count.toLocaleString('en')} random users in one request`,
        { SJ_BENCH_TASK: 'revoke', ...variant },
        '6a-ref',
        {
          userIds,
          reason: 'benchmark',
        },
      ),
    ),
  ];
}

function startWorker(url: string, nodeOptions = process.env.SJ_BENCH_WORKER_NODE_OPTIONS ?? ''): { child: ChildProcess; started: Promise<void> } {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('JANITOR_') && key !== 'DATABASE_URL'));
  const child = spawn(process.execPath, [new URL('../src/cli.ts', import.meta.url).pathname, 'start'], {
    env: {
      ...base,
      DATABASE_URL: url,
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
      JANITOR_MIGRATE: 'false',
      // No scheduled purge or reap may run during the measurement.
      JANITOR_PURGE_CRON: '0 0 1 1 *',
      JANITOR_REAP_CRON: '0 0 1 1 *',
      LOG_LEVEL: 'info',
      // The worker's own Node options (say, the image's heap limit), not the benchmark's.
      NODE_OPTIONS: nodeOptions,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const started = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('session-janitor worker started')) resolve();
      if (out.length > 100_000) out = out.slice(-10_000);
    });
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`the worker exited (code ${code}) before it started: ${out.slice(-2000)}`)));
  });
  return { child, started };
}

async function stopWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

/** 6b: single-user revocations at `rate` a second for `seconds`, enqueue to rows gone. */
export async function singleUserRevocations(ctx: BenchContext, users: number, rate: number, seconds: number): Promise<CaseResult> {
  const name = `single-user revocations at ${rate}/s for ${seconds} s through pg-boss and a worker process, enqueue to rows gone`;
  ctx.log(`case 6b: ${name}`);
  return withCopy(ctx, async (db) => {
    const worker = startWorker(db.url);
    const pool = new pg.Pool({ connectionString: db.url, max: 16, application_name: 'sj-bench-producer' });
    try {
      await worker.started;
      const count = Math.round(rate * seconds);
      const { rows } = await pool.query<{ user_id: number; n: number }>(
        'SELECT user_id, count(*)::int AS n FROM auth.refresh_session WHERE user_id = ANY($1::int[]) GROUP BY user_id',
        [sampleUsers(users, count * 2, 11)],
      );
      const targets = rows.slice(0, count);
      const latencies: number[] = [];
      let revoked = 0;
      const origin = performance.now();
      await Promise.all(
        targets.map(async ({ user_id: userId, n }, i) => {
          const due = origin + (i * 1000) / rate;
          await sleep(Math.max(0, due - performance.now()));
          const started = performance.now();
          await enqueueRevocation(pool, { userId, reason: 'benchmark' });
          for (;;) {
            const { rows: left } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session WHERE user_id = $1', [userId]);
            if ((left[0]?.n ?? 0) === 0) break;
            if (performance.now() - started > 60_000) throw new Error(`user ${userId}: rows still there after 60 s`);
            await sleep(10);
          }
          latencies.push(performance.now() - started);
          revoked += n;
        }),
      );
      const summary = summarize(latencies);
      ctx.log(`  ${summary.n} revocations: p50 ${summary.p50.toFixed(0)} ms, p99 ${summary.p99.toFixed(0)} ms, max ${summary.max.toFixed(0)} ms`);
      return {
        id: '6b',
        name,
        rows: revoked,
        batches: summary,
        notes: `${summary.n} revocations of one user each (${revoked} sessions); the batch column is enqueue-to-rows-gone latency`,
      };
    } finally {
      await pool.end();
      await stopWorker(worker.child);
    }
  });
}

/** /proc/<pid>/status fields in bytes (Linux). */
async function procStatus(pid: number): Promise<Record<string, number>> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  return Object.fromEntries([...text.matchAll(/^(\w+):\s+(\d+) kB$/gm)].map((m) => [m[1] ?? '', Number(m[2]) * 1024]));
}

/** 6c: peak memory of a worker carrying out the largest requests the contract allows, `concurrency` at a time. */
export async function revocationMemory(ctx: BenchContext, concurrency: number): Promise<CaseResult> {
  const jobs = concurrency * 2;
  const name = `${jobs} revocations of 100,000 jtis each (the contract's maximum) at JANITOR_REVOKE_CONCURRENCY=${concurrency}: worker peak memory`;
  ctx.log(`case 6c: ${name}`);
  return withCopy(ctx, async (db) => {
    const worker = startWorker(db.url);
    const pool = new pg.Pool({ connectionString: db.url, max: 4, application_name: 'sj-bench-producer' });
    try {
      await worker.started;
      const pid = worker.child.pid;
      if (pid === undefined) throw new Error('the worker has no pid');
      const { rows } = await pool.query<{ jti: string }>('SELECT jti::text AS jti FROM auth.refresh_session LIMIT $1', [jobs * 100_000]);
      const real = rows.map((r) => r.jti);
      const payloads = Array.from({ length: jobs }, (_, j) => ({
        jtis: Array.from({ length: 100_000 }, (_, i) => real[j * 100_000 + i] ?? randomUUID()),
        reason: 'benchmark',
      }));
      const idle = await procStatus(pid);
      let peakAnon = idle.RssAnon ?? 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peakAnon = Math.max(peakAnon, (await procStatus(pid).catch((): Record<string, number> => ({}))).RssAnon ?? 0);
          await sleep(20);
        }
      })();
      const started = performance.now();
      const ids: string[] = [];
      for (const payload of payloads) {
        const { rows: enqueued } = await pool.query<{ id: string }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [JSON.stringify(payload)]);
        if (enqueued[0]?.id) ids.push(enqueued[0].id);
      }
      let revoked = 0;
      for (;;) {
        const { rows: done } = await pool.query<{ state: string; revoked: number | null }>(
          `SELECT state, (output->>'revoked')::int AS revoked FROM unnest($1::uuid[]) x, session_janitor.revocation_status(x)`,
          [ids],
        );
        if (done.length === ids.length && done.every((d) => d.state === 'completed' || d.state === 'failed')) {
          revoked = done.reduce((sum, d) => sum + (d.revoked ?? 0), 0);
          if (done.some((d) => d.state === 'failed')) throw new Error('a revocation failed');
          break;
        }
        if (performance.now() - started > 600_000) throw new Error('revocations still running after 10 minutes');
        await sleep(100);
      }
      const seconds = (performance.now() - started) / 1000;
      sampling = false;
      await sampler;
      const peak = await procStatus(pid);
      const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
      const figures = `idle RSS ${mib(idle.VmRSS ?? 0)} (anonymous ${mib(idle.RssAnon ?? 0)}); peak RSS ${mib(peak.VmHWM ?? 0)}, peak anonymous ${mib(peakAnon)}`;
      ctx.log(`  ${figures}; ${revoked} sessions in ${seconds.toFixed(1)} s`);
      return {
        id: '6c',
        name,
        rows: revoked,
        seconds,
        rowsPerSecond: revoked / seconds,
        notes: figures,
        peakRssBytes: peak.VmHWM ?? 0,
        peakAnonBytes: peakAnon,
      };
    } finally {
      await pool.end();
      await stopWorker(worker.child);
    }
  });
}

/** k8s/base/deployment.yaml's NODE_OPTIONS. */
const PRODUCTION_NODE_OPTIONS = '--max-old-space-size=160 --max-semi-space-size=4';

/** The payload of issue 25.1, built by the database. */
const AMPLIFIED = `jsonb_build_object('userId', 1, 'reason', 'x', 'pad', (SELECT jsonb_agg('{}'::jsonb) FROM generate_series(1, 1240000)))`;

/** 6d: a worker's peak memory with amplified payloads, then with the largest valid ones. */
export async function amplifiedPayloadMemory(ctx: BenchContext): Promise<CaseResult> {
  const name = `amplified payloads (1, 2, 4 of 5 MB of empty objects, inserted into pgboss.job) and 4 valid payloads of 100,000 jtis, worker with ${PRODUCTION_NODE_OPTIONS}: peak memory`;
  ctx.log(`case 6d: ${name}`);
  const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
  const scenarios: Array<{ readonly label: string; readonly amplified: number; readonly valid: number }> = [
    { label: '1 amplified', amplified: 1, valid: 0 },
    { label: '2 amplified', amplified: 2, valid: 0 },
    { label: '4 amplified', amplified: 4, valid: 0 },
    { label: '4 valid maximum', amplified: 0, valid: 4 },
  ];
  const figures: string[] = [];
  let peakRss = 0;
  let seconds = 0;
  for (const scenario of scenarios) {
    const line = await withCopy(ctx, async (db) => {
      const pool = new pg.Pool({ connectionString: db.url, max: 4, application_name: 'sj-bench-producer' });
      const worker = startWorker(db.url, PRODUCTION_NODE_OPTIONS);
      let exit: string | null = null;
      worker.child.once('exit', (code, signal) => (exit = `exited (code ${code}, signal ${signal})`));
      try {
        await worker.started;
        const pid = worker.child.pid;
        if (pid === undefined) throw new Error('the worker has no pid');
        const ids: string[] = [];
        for (let i = 0; i < scenario.amplified; i++) {
          const { rows } = await pool.query<{ id: string }>(
            `INSERT INTO pgboss.job (name, data, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds, heartbeat_seconds, dead_letter)
             SELECT q.name, ${AMPLIFIED}, q.policy, q.retry_limit, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.expire_seconds, q.deletion_seconds, q.heartbeat_seconds, q.dead_letter
               FROM pgboss.queue q WHERE q.name = 'refresh-session.revoke'
             RETURNING id`,
          );
          if (rows[0]) ids.push(rows[0].id);
        }
        if (scenario.valid > 0) {
          const { rows } = await pool.query<{ jti: string }>('SELECT jti::text AS jti FROM auth.refresh_session LIMIT $1', [scenario.valid * 100_000]);
          for (let j = 0; j < scenario.valid; j++) {
            const payload = { jtis: Array.from({ length: 100_000 }, (_, i) => rows[j * 100_000 + i]?.jti ?? randomUUID()), reason: 'benchmark' };
            const { rows: enqueued } = await pool.query<{ id: string }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [
              JSON.stringify(payload),
            ]);
            if (enqueued[0]?.id) ids.push(enqueued[0].id);
          }
        }
        const started = performance.now();
        let states: Array<{ state: string; copies: number }> = [];
        for (;;) {
          ({ rows: states } = await pool.query<{ state: string; copies: number }>(
            `SELECT j.state::text AS state, (SELECT count(*)::int FROM pgboss.job d WHERE d.name = 'refresh-session.dead-letter' AND d.source_id = j.id) AS copies
               FROM pgboss.job j WHERE j.name = 'refresh-session.revoke' AND j.id = ANY($1::uuid[])`,
            [ids],
          ));
          if (states.length === ids.length && states.every((r) => r.state === 'completed' || r.state === 'failed')) break;
          if (exit !== null || performance.now() - started > 600_000) break;
          await sleep(100);
        }
        const elapsed = (performance.now() - started) / 1000;
        seconds += elapsed;
        const peak = exit === null ? ((await procStatus(pid)).VmHWM ?? 0) : 0;
        peakRss = Math.max(peakRss, peak);
        const failed = states.filter((r) => r.state === 'failed');
        const text = `${scenario.label}: peak RSS ${exit === null ? mib(peak) : '?'}, worker ${exit ?? 'alive'}, ${states.filter((r) => r.state === 'completed').length} completed, ${failed.length} dead-lettered (copies each: ${failed.map((r) => r.copies).join(', ') || '-'}), ${elapsed.toFixed(1)} s`;
        ctx.log(`  ${text}`);
        return text;
      } finally {
        await pool.end();
        await stopWorker(worker.child);
      }
    });
    figures.push(line);
  }
  return { id: '6d', name, seconds, notes: figures.join('; '), peakRssBytes: peakRss };
}
