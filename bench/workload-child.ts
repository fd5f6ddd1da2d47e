/**
 * The auth service's own traffic, at a fixed rate (or one that rises and falls, see
 * SJ_BENCH_WORKLOAD_PROFILE), in a process of its own: 70% refreshes (UPDATE
 * last_used_at by jti), 20% sign-ins (INSERT), 10% reads (SELECT by jti), on live sessions only,
 * each one autocommit statement, prepared, over a small pool (SJ_BENCH_WORKLOAD_CLIENTS).
 *
 * Open loop, as pgbench --rate: transaction i is due at start + i / rate whatever happened before,
 * and its latency counts from when it was due, so a stall shows as latency rather than as fewer
 * transactions (no coordinated omission). Samples go to the parent on `stop`.
 *
 * SJ_BENCH_WORKLOAD_PROFILE (JSON `{"low":100,"high":800,"periodSeconds":8}`): the rate rises
 * linearly from low to high and falls back to low every period (a triangle wave from the first
 * transaction on), the morning and evening of an auth service in seconds; each transaction is due
 * 1 / rate after the one before, at the rate of its own due time. Without it: SJ_BENCH_WORKLOAD_RATE.
 */
import pg from 'pg';
import type { ParentMessage, WorkloadMessage, WorkloadSample } from './protocol.ts';

const url = process.env.SJ_BENCH_URL;
if (url === undefined || process.send === undefined) throw new Error('workload-child.ts is forked by the benchmark with SJ_BENCH_URL');
const rate = Number(process.env.SJ_BENCH_WORKLOAD_RATE ?? 500);
const clients = Number(process.env.SJ_BENCH_WORKLOAD_CLIENTS ?? 8);
const send = (message: WorkloadMessage) => process.send?.(message);

const pool = new pg.Pool({ connectionString: url, max: clients, application_name: 'sj-bench-workload' });
const { rows: live } = await pool.query<{ jti: string }>(
  `SELECT jti FROM auth.refresh_session TABLESAMPLE SYSTEM (10) REPEATABLE (7)
    WHERE expires_at > now() + interval '1 day' LIMIT 50000`,
);
const jtis = live.map((r) => r.jti);
const { rows: range } = await pool.query<{ lo: number; hi: number }>('SELECT min(id) AS lo, max(id) AS hi FROM auth."user"');
const lo = range[0]?.lo ?? 1;
const hi = range[0]?.hi ?? 1;
await Promise.all(Array.from({ length: clients }, async () => (await pool.connect()).release()));

const UPDATE = { name: 'wl_update', text: 'UPDATE auth.refresh_session SET last_used_at = now(), refresh_version = refresh_version + 1 WHERE jti = $1' };
const INSERT = {
  name: 'wl_insert',
  text: `INSERT INTO auth.refresh_session (user_id, expires_at, user_agent, ip_address) VALUES ($1, now() + interval '45 days', $2, $3)`,
};
const SELECT = { name: 'wl_select', text: 'SELECT id, user_id, refresh_version, expires_at FROM auth.refresh_session WHERE jti = $1' };

const samples: WorkloadSample[] = [];
let lateStarts = 0;
let stopping = false;
let inFlight = 0;
const pick = () => jtis[Math.floor(Math.random() * jtis.length)] ?? '00000000-0000-0000-0000-000000000000';

function fire(dueAt: number): void {
  const r = Math.random();
  const kind = r < 0.7 ? 'update' : r < 0.9 ? 'insert' : 'select';
  const query =
    kind === 'update'
      ? { ...UPDATE, values: [pick()] }
      : kind === 'insert'
        ? { ...INSERT, values: [lo + Math.floor(Math.random() * (hi - lo + 1)), 'bench-agent/1.0', '192.0.2.7'] }
        : { ...SELECT, values: [pick()] };
  inFlight += 1;
  pool.query(query).then(
    () => done(dueAt, kind, false),
    () => done(dueAt, kind, true),
  );
}

function done(dueAt: number, kind: WorkloadSample[2], failed: boolean): void {
  inFlight -= 1;
  const now = performance.timeOrigin + performance.now();
  samples.push([now, now - dueAt, kind, failed]);
}

interface Profile {
  readonly low: number;
  readonly high: number;
  readonly periodSeconds: number;
}
const profile = process.env.SJ_BENCH_WORKLOAD_PROFILE ? (JSON.parse(process.env.SJ_BENCH_WORKLOAD_PROFILE) as Profile) : null;
/** Transactions a second at `elapsedMs` after the first one was due. */
function rateAt(elapsedMs: number): number {
  if (profile === null) return rate;
  const phase = (elapsedMs / (profile.periodSeconds * 1000)) % 1;
  return profile.low + (profile.high - profile.low) * (1 - Math.abs(2 * phase - 1));
}

const origin = performance.timeOrigin + performance.now();
let nextDue = origin;
function tick(): void {
  if (stopping) return;
  const now = performance.timeOrigin + performance.now();
  while (nextDue <= now) {
    if (now - nextDue > 5) lateStarts += 1;
    fire(nextDue);
    nextDue += 1000 / rateAt(nextDue - origin);
  }
  setTimeout(tick, Math.max(0, nextDue - (performance.timeOrigin + performance.now())));
}
tick();

async function stop(message: ParentMessage): Promise<void> {
  if (message.type !== 'stop') return;
  stopping = true;
  while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  await pool.end();
  // Disconnect only once the (large) message is out.
  process.send?.({ type: 'samples', samples, lateStarts } satisfies WorkloadMessage, undefined, {}, () => process.disconnect());
}
process.on('message', (message: ParentMessage) => void stop(message));
send({ type: 'ready', jtis: jtis.length });
