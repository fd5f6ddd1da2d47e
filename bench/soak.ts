/**
 * `npm run soak`: the worker under a steady synthetic load for a bounded time, watching for leaks
 * and drift. Not part of CI.
 *
 * - The worker runs as a child process (`node src/cli.ts start`), as in production, with its
 *   schedules every minute (JANITOR_PURGE_CRON and JANITOR_REAP_CRON `* * * * *`, idle timeout 1h);
 *   any JANITOR_* variable of this process's environment is passed on to it.
 * - The load (this process, its own pool, application_name sj-soak-load): the auth service's
 *   refreshes (UPDATE last_used_at by jti), logins (INSERT; half of them expire within minutes, so
 *   every purge tick has work), lookups (SELECT by jti), a batch of idle sessions a minute (work for
 *   every reap tick), and a revocation stream (enqueueRevocation: by user, by users, by jti).
 * - Every SAMPLE_SECONDS it scrapes the worker's /metrics (process_resident_memory_bytes,
 *   nodejs_heap_size_used_bytes, nodejs_eventloop_lag_p99/max_seconds: prom-client measures the lag
 *   with perf_hooks.monitorEventLoopDelay and resets it at each scrape, so each sample covers its
 *   own interval; session_janitor_sessions_deleted_total by reason) and reads pg_stat_activity
 *   (connections by application_name) and the expired backlog; every minute it prints a line.
 * - At the end, a verdict: memory (RSS, heap) and the worker's connections flat (the last third of
 *   the samples against the first), and the expired backlog bounded once the first purge has run
 *   (never above two minutes of expirations). Exit 0 when all hold, 1 otherwise.
 *
 * Database: a scratch database `sj_soak_<random>`, dropped at the end, on the server DATABASE_URL
 * names, or on an embedded PostgreSQL in a temporary directory when DATABASE_URL is unset.
 *
 * Settings: SJ_SOAK_MINUTES (default 10), SJ_SOAK_RATE (load operations a second, default 200),
 * SJ_SOAK_SESSIONS (seeded sessions, default 200000).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { enqueueRevocation } from '../src/client.ts';
import { createAuthTables } from '../src/db/dev-bootstrap.ts';
import { startEmbedded, type EmbeddedServer } from '../src/db/embedded.ts';
import type { RevokeRequest } from '../src/revoke-request.ts';

const MINUTES = Number(process.env.SJ_SOAK_MINUTES ?? 10);
const RATE = Number(process.env.SJ_SOAK_RATE ?? 200);
const SESSIONS = Number(process.env.SJ_SOAK_SESSIONS ?? 200_000);
const SAMPLE_SECONDS = 10;
const USERS = 5000;
const IDLE_PER_MINUTE = 500;
const REVOCATION_EVERY_MS = 2000;
const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

if (!(MINUTES > 0) || !(RATE > 0) || !(SESSIONS >= 1000)) {
  process.stderr.write('soak: SJ_SOAK_MINUTES and SJ_SOAK_RATE must be positive numbers, SJ_SOAK_SESSIONS at least 1000\n');
  process.exit(64);
}

interface Sample {
  readonly at: number;
  readonly rssMb: number;
  readonly heapMb: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  readonly workerConnections: number;
  readonly connections: Record<string, number>;
  readonly backlog: number;
  readonly deleted: Record<string, number>;
  readonly purgesCompleted: number;
}

const log = (line: string) => process.stdout.write(`${line}\n`);
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;
const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const max = (xs: readonly number[]) => (xs.length === 0 ? 0 : Math.max(...xs));

/** A value of a Prometheus text scrape: the sample with exactly these labels. */
function metric(scrape: string, name: string, labels = ''): number {
  const line = scrape.split('\n').find((l) => l.startsWith(labels === '' ? `${name} ` : `${name}{${labels}} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

// ---------------------------------------------------------------------------------------------
// The database.

let server: EmbeddedServer | undefined;
let adminUrl = process.env.DATABASE_URL;
if (adminUrl === undefined || adminUrl === '') {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-soak-'));
  // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
  await chmod(dataDir, 0o755);
  log(`soak: starting an embedded PostgreSQL in ${dataDir}`);
  server = await startEmbedded({ dataDir, persistent: false });
  adminUrl = server.connectionString;
}
const database = `sj_soak_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: adminUrl, application_name: 'sj-soak-admin' });
await admin.connect();
await admin.query(`CREATE DATABASE ${database}`);
const dbUrl = (() => {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
})();
const load = new pg.Pool({ connectionString: dbUrl, max: 6, application_name: 'sj-soak-load' });
load.on('error', () => undefined);

let worker: ReturnType<typeof spawn> | undefined;
let stopping = false;
process.on('SIGINT', () => {
  log('soak: interrupted, finishing early');
  stopping = true;
});

try {
  await createAuthTables(load);
  log(`soak: seeding ${SESSIONS} sessions of ${USERS} users (30% expired, 10% idle) in ${database}`);
  await load.query(`INSERT INTO auth."user" (email) SELECT 'soak-' || g || '@example.invalid' FROM generate_series(1, $1::int) g`, [USERS]);
  await load.query(
    `INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at, user_agent, ip_address)
     SELECT 1 + g % $2::int,
            now() - random() * interval '60 days',
            CASE WHEN g % 10 = 0 THEN now() - interval '2 hours' - random() * interval '20 days' ELSE now() - random() * interval '50 minutes' END,
            CASE WHEN g % 10 IN (1, 2, 3) THEN now() - random() * interval '30 days' ELSE now() + interval '1 day' + random() * interval '30 days' END,
            'soak-agent/1.0', '192.0.2.1'
       FROM generate_series(1, $1::int) g`,
    [SESSIONS, USERS],
  );
  await load.query('ANALYZE auth.refresh_session');
  const { rows: seedJtis } = await load.query<{ jti: string }>('SELECT jti::text FROM auth.refresh_session TABLESAMPLE SYSTEM (20) LIMIT 20000');
  const jtis = seedJtis.map((r) => r.jti);

  // --- the worker
  const passOn = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('JANITOR_') || k === 'LOG_LEVEL'));
  worker = spawn(process.execPath, [CLI, 'start'], {
    env: {
      PATH: process.env.PATH ?? '',
      JANITOR_PURGE_CRON: '* * * * *',
      JANITOR_REAP_CRON: '* * * * *',
      JANITOR_IDLE_TIMEOUT: '1h',
      JANITOR_GAUGE_REFRESH_CRON: '*/10 * * * * *',
      ...passOn,
      DATABASE_URL: dbUrl,
      JANITOR_METRICS_PORT: '0',
      JANITOR_METRICS_HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const levels: Record<string, number> = {};
  let workerLog = '';
  let metricsPort = 0;
  let workerStarted = false;
  const onOutput = (chunk: Buffer) => {
    workerLog += chunk.toString();
    const lines = workerLog.split('\n');
    workerLog = lines.pop() ?? '';
    for (const line of lines) {
      const level = /"level":"(\w+)"/.exec(line)?.[1] ?? 'other';
      levels[level] = (levels[level] ?? 0) + 1;
      if (level === 'error' || level === 'fatal') log(`worker ${level}: ${line.slice(0, 300)}`);
      const port = /metrics at http:\/\/localhost:(\d+)\//.exec(line)?.[1];
      if (port) metricsPort = Number(port);
      // Only then are the queues and session_janitor.enqueue_revocation installed.
      if (line.includes('session-janitor worker started')) workerStarted = true;
    }
  };
  worker.stdout?.on('data', onOutput);
  worker.stderr?.on('data', onOutput);
  const exited = new Promise<number | null>((resolve) => worker?.on('close', (code) => resolve(code)));
  for (let waited = 0; metricsPort === 0 || !workerStarted; waited += 100) {
    if (waited > 60_000 || worker.exitCode !== null) throw new Error('the worker did not start');
    await sleep(100);
  }
  log(`soak: worker pid ${worker.pid}, metrics on port ${metricsPort}; load ${RATE} ops/s for ${MINUTES} min`);

  // --- the load
  const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
  const randomUser = () => 1 + Math.floor(Math.random() * USERS);
  const counts = { refresh: 0, login: 0, lookup: 0, failed: 0, idleInserted: 0, revocations: 0, revokeFailed: 0 };
  const revocationIds: string[] = [];
  let expiringPerMinute = 0;
  const endAt = Date.now() + MINUTES * 60_000;
  const operation = async (): Promise<void> => {
    const r = Math.random();
    try {
      if (r < 0.6) {
        await load.query('UPDATE auth.refresh_session SET last_used_at = now(), refresh_version = refresh_version + 1 WHERE jti = $1', [pick(jtis)]);
        counts.refresh += 1;
      } else if (r < 0.8) {
        // Half of the logins expire within five minutes: every purge tick finds some.
        const { rows } = await load.query<{ jti: string }>(
          `INSERT INTO auth.refresh_session (user_id, expires_at) VALUES ($1, now() + CASE WHEN $2 THEN random() * interval '5 minutes' ELSE interval '30 days' END) RETURNING jti::text`,
          [randomUser(), r < 0.7],
        );
        const jti = rows[0]?.jti;
        if (jti) jtis[Math.floor(Math.random() * jtis.length)] = jti;
        counts.login += 1;
      } else {
        await load.query('SELECT id, user_id, expires_at FROM auth.refresh_session WHERE jti = $1', [pick(jtis)]);
        counts.lookup += 1;
      }
    } catch {
      counts.failed += 1;
    }
  };
  const loadLoop = (async () => {
    const tickMs = 50;
    const perTick = RATE / (1000 / tickMs);
    let debt = 0;
    while (!stopping && Date.now() < endAt) {
      debt += perTick;
      const batch: Array<Promise<void>> = [];
      for (; debt >= 1; debt -= 1) batch.push(operation());
      await Promise.all([...batch, sleep(tickMs)]);
    }
  })();
  const idleLoop = (async () => {
    while (!stopping && Date.now() < endAt) {
      await load
        .query(
          `INSERT INTO auth.refresh_session (user_id, last_used_at, expires_at)
           SELECT 1 + (random() * ($2::int - 1))::int, now() - interval '2 hours', now() + interval '30 days' FROM generate_series(1, $1::int)`,
          [IDLE_PER_MINUTE, USERS],
        )
        .then(() => (counts.idleInserted += IDLE_PER_MINUTE))
        .catch(() => (counts.failed += 1));
      await sleep(60_000);
    }
  })();
  const revokeLoop = (async () => {
    for (let i = 0; !stopping && Date.now() < endAt; i += 1) {
      const request: RevokeRequest =
        i % 3 === 0
          ? { userId: randomUser(), reason: 'soak' }
          : i % 3 === 1
            ? { userIds: Array.from({ length: 20 }, randomUser), reason: 'soak' }
            : { jtis: Array.from({ length: 5 }, () => pick(jtis)), reason: 'soak' };
      try {
        const id = await enqueueRevocation(load, request);
        if (id) revocationIds.push(id);
        counts.revocations += 1;
      } catch (error) {
        counts.revokeFailed += 1;
        if (counts.revokeFailed <= 3) log(`soak: a revocation was refused: ${error instanceof Error ? error.message : String(error)}`);
      }
      await sleep(REVOCATION_EVERY_MS);
    }
  })();

  // --- sampling
  const samples: Sample[] = [];
  const started = Date.now();
  let lastPrinted = started;
  let loginsAtLastMinute = 0;
  let printedDeleted: Record<string, number> = { expired: 0, idle: 0, revoked: 0 };
  log('');
  log(
    '  min   RSS MB  heap MB  lag p99/max ms  conns worker (pool+pg-boss) / load  expired backlog  deleted in the minute: expired idle revoked  load ops/s  revocations sent/done',
  );
  while (!stopping && Date.now() < endAt) {
    await sleep(Math.min(SAMPLE_SECONDS * 1000, Math.max(0, endAt - Date.now())));
    const scrape = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
      .then((r) => r.text())
      .catch(() => '');
    const { rows: activity } = await load.query<{ app: string; n: number }>(
      `SELECT coalesce(application_name, '') AS app, count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1`,
    );
    const connections = Object.fromEntries(activity.map((r) => [r.app, r.n]));
    const { rows: backlogRows } = await load.query<{ n: number }>('SELECT count(*)::int AS n FROM auth.refresh_session WHERE expires_at < now()');
    const { rows: purgeRows } = await load.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'refresh-session.purge-expired' AND state = 'completed'`,
    );
    const sample: Sample = {
      at: Date.now(),
      rssMb: metric(scrape, 'process_resident_memory_bytes') / 2 ** 20,
      heapMb: metric(scrape, 'nodejs_heap_size_used_bytes') / 2 ** 20,
      lagP99Ms: metric(scrape, 'nodejs_eventloop_lag_p99_seconds') * 1000,
      lagMaxMs: metric(scrape, 'nodejs_eventloop_lag_max_seconds') * 1000,
      workerConnections: (connections['session-janitor'] ?? 0) + (connections['session-janitor-pgboss'] ?? 0),
      connections,
      backlog: backlogRows[0]?.n ?? 0,
      deleted: {
        expired: metric(scrape, 'session_janitor_sessions_deleted_total', 'reason="expired"'),
        idle: metric(scrape, 'session_janitor_sessions_deleted_total', 'reason="idle"'),
        revoked: metric(scrape, 'session_janitor_sessions_deleted_total', 'reason="revoked"'),
      },
      purgesCompleted: purgeRows[0]?.n ?? 0,
    };
    samples.push(sample);

    if (sample.at - lastPrinted >= 59_000 || sample.at >= endAt - 1000) {
      const minute = samples.filter((s) => s.at > lastPrinted);
      const elapsedMin = (sample.at - started) / 60_000;
      const ops = (counts.refresh + counts.login + counts.lookup) / ((sample.at - started) / 1000);
      const { rows: done } = await load.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE id = ANY($1::uuid[]) AND state = 'completed'`, [
        revocationIds,
      ]);
      const delta = (reason: string) => (sample.deleted[reason] ?? 0) - (printedDeleted[reason] ?? 0);
      expiringPerMinute = Math.max(expiringPerMinute, ((counts.login - loginsAtLastMinute) / 2) * (60_000 / (sample.at - lastPrinted)));
      loginsAtLastMinute = counts.login;
      log(
        [
          elapsedMin.toFixed(1).padStart(5),
          sample.rssMb.toFixed(1).padStart(8),
          sample.heapMb.toFixed(1).padStart(8),
          `${round(max(minute.map((s) => s.lagP99Ms)))}/${round(max(minute.map((s) => s.lagMaxMs)))}`.padStart(15),
          `${sample.workerConnections} (${sample.connections['session-janitor'] ?? 0}+${sample.connections['session-janitor-pgboss'] ?? 0}) / ${sample.connections['sj-soak-load'] ?? 0}`.padStart(
            33,
          ),
          String(sample.backlog).padStart(16),
          `${delta('expired')} ${delta('idle')} ${delta('revoked')}`.padStart(44),
          round(ops).toString().padStart(11),
          `${counts.revocations}/${done[0]?.n ?? 0}`.padStart(23),
        ].join(' '),
      );
      printedDeleted = { ...sample.deleted };
      lastPrinted = sample.at;
    }
  }
  stopping = true;
  await Promise.all([loadLoop, idleLoop, revokeLoop]);

  // --- the end: the worker stops gracefully, then the verdict
  worker.kill('SIGTERM');
  const code = await exited;
  const { rows: revoked } = await load.query<{ state: string; n: number }>(
    `SELECT state::text, count(*)::int AS n FROM pgboss.job WHERE id = ANY($1::uuid[]) GROUP BY 1`,
    [revocationIds],
  );
  const third = Math.max(1, Math.floor(samples.length / 3));
  const first = samples.slice(0, third);
  const last = samples.slice(-third);
  const rssGrowth = mean(last.map((s) => s.rssMb)) - mean(first.map((s) => s.rssMb));
  const heapGrowth = mean(last.map((s) => s.heapMb)) - mean(first.map((s) => s.heapMb));
  // Flat: within 20% (RSS) / 25% (heap) of the first third, and at least a few MB of slack for
  // the allocator and the JIT settling.
  const rssFlat = rssGrowth <= Math.max(16, 0.2 * mean(first.map((s) => s.rssMb)));
  const heapFlat = heapGrowth <= Math.max(8, 0.25 * mean(first.map((s) => s.heapMb)));
  const connectionsFlat = max(last.map((s) => s.workerConnections)) <= max(first.map((s) => s.workerConnections));
  const afterFirstPurge = samples.filter((s) => s.purgesCompleted > 0);
  const backlogLimit = Math.round(2 * expiringPerMinute + 100);
  const steadyBacklog = max(afterFirstPurge.slice(1).map((s) => s.backlog));
  const backlogBounded = afterFirstPurge.length >= 2 && steadyBacklog <= backlogLimit;
  const total = samples.at(-1)?.deleted ?? {};
  log('');
  log(
    `soak: ${round((Date.now() - started) / 60_000)} min, ${samples.length} samples; load: ${counts.refresh} refreshes, ${counts.login} logins, ${counts.lookup} lookups, ${counts.idleInserted} idle sessions added, ${counts.failed} failed operations; ` +
      `revocations: ${counts.revocations} sent (${counts.revokeFailed} refused), jobs ${JSON.stringify(Object.fromEntries(revoked.map((r) => [r.state, r.n])))}; ` +
      `deleted: ${total.expired ?? 0} expired, ${total.idle ?? 0} idle, ${total.revoked ?? 0} revoked; worker log lines ${JSON.stringify(levels)}; worker exit ${code}`,
  );
  const verdicts = [
    `memory ${rssFlat && heapFlat ? 'flat' : 'GROWING'} (RSS ${round(mean(first.map((s) => s.rssMb)))} -> ${round(mean(last.map((s) => s.rssMb)))} MB, heap ${round(mean(first.map((s) => s.heapMb)))} -> ${round(mean(last.map((s) => s.heapMb)))} MB, first vs last third)`,
    `connections ${connectionsFlat ? 'flat' : 'GROWING'} (worker max ${max(first.map((s) => s.workerConnections))} -> ${max(last.map((s) => s.workerConnections))})`,
    `backlog ${backlogBounded ? 'bounded' : 'NOT BOUNDED'} (after the first purge at most ${steadyBacklog}, limit ${backlogLimit}: two minutes of expiring logins)`,
    `event-loop lag p99 max ${round(max(samples.map((s) => s.lagP99Ms)))} ms, max ${round(max(samples.map((s) => s.lagMaxMs)))} ms`,
  ];
  const pass = rssFlat && heapFlat && connectionsFlat && backlogBounded && code === 0 && (levels.error ?? 0) === 0 && (levels.fatal ?? 0) === 0;
  log(
    `VERDICT: ${pass ? 'PASS' : 'FAIL'}: ${verdicts.join('; ')}${code === 0 ? '' : `; the worker exited ${code}`}${(levels.error ?? 0) > 0 ? `; ${levels.error} error log lines` : ''}`,
  );
  process.exitCode = pass ? 0 : 1;
} finally {
  if (worker && worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
  await load.end().catch(() => undefined);
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
  await admin.end().catch(() => undefined);
  await server?.stop();
}
