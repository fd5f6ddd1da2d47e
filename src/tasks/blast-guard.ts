/**
 * The blast-radius guard of the purge and the reaper: the two ways a janitor logs out a whole user
 * base are a setting that is wrong (JANITOR_IDLE_TIMEOUT=2h where users refresh daily) and a clock
 * (or the rows' timestamps) that jumped. Both make rows eligible *retroactively*: rows that the
 * task's last run that drained, had it run under the settings and the timestamps of now, would
 * already have deleted, and did not. A healthy table has almost none of those (rows held by other
 * transactions): every candidate became eligible since that run. A neglected table's first run has
 * no drained run before it, and its backlog became eligible over months, not retroactively; a mass
 * logout by `expires_at = now()` makes rows eligible now, after the drained run; a revocation does
 * not go through the purge or the reaper at all. So the guard counts, before a run deletes
 * anything, the retroactive candidates (in a sample of the table when it is large), and when they
 * are more than JANITOR_BLAST_RADIUS of the table's rows (0.1 by default: a healthy table has
 * about 0, a mistake that logs out a tenth of the users is worth a human's look), the run stops,
 * deletes nothing, and stays stopped (every run, every replica) until an operator confirms
 * (`session-janitor confirm <task> --reason`, recorded with the database role) or the settings
 * change (the grace, the idle timeout). The next run that drains ends the stop.
 */
import type pg from 'pg';
import { confirmTrip, readGuard, readGuards, recordDrained, recordTrip, retroactiveSample, tableRowEstimate, type GuardRow } from '../db/sql/blast-guard.ts';
import { qualified } from '../db/sql/identifiers.ts';
import type { ScheduledTaskName } from '../queues.ts';
import type { TaskContext } from './context.ts';

/** About this many rows are sampled (TABLESAMPLE SYSTEM) on a larger table; a smaller one is read whole. */
const SAMPLE_ROWS = 100_000;

export interface GuardDecision {
  /** null: the run may go on. */
  readonly stop: null | { readonly fraction: number };
  /** The database's now() when the run started: what a drained run records. */
  readonly startedAt: number;
}

/** What the eligibility depends on: a stop under other settings is void. */
function settingsOf(ctx: TaskContext, task: ScheduledTaskName): { text: string; seconds: number } {
  const { config } = ctx;
  const seconds = task === 'purge-expired' ? config.expiredGraceSeconds : (config.idleTimeoutSeconds ?? 0);
  return { text: `${qualified(config.sessionTable)} ${task === 'purge-expired' ? 'grace' : 'idle'}=${seconds}s`, seconds };
}

/** Before a run: whether it may delete. */
export async function checkBlastRadius(ctx: TaskContext, task: ScheduledTaskName): Promise<GuardDecision> {
  const { pool, config } = ctx;
  const { rows } = await pool.query<GuardRow>({ ...readGuard, values: [task] });
  const row = rows[0];
  const startedAt = row?.now ?? Date.now() / 1000;
  const limit = config.blastRadius;
  const settings = settingsOf(ctx, task);
  if (limit === null || row === undefined || row.drained_at === null) return { stop: null, startedAt };
  if (row.tripped_at !== null && row.tripped_settings === settings.text) {
    const confirmed = row.confirmed_at !== null && row.confirmed_at >= row.tripped_at;
    return { stop: confirmed ? null : { fraction: row.tripped_fraction ?? 1 }, startedAt };
  }
  const estimate = (await pool.query<{ rows: number }>({ ...tableRowEstimate, values: [qualified(config.sessionTable)] })).rows[0]?.rows ?? 0;
  const percent = estimate <= SAMPLE_ROWS ? 100 : Math.max(0.01, (100 * SAMPLE_ROWS) / estimate);
  const sample = (
    await pool.query<{ sampled: number; retroactive: number }>({
      ...retroactiveSample(config.sessionTable, task === 'reap-idle'),
      values: [row.drained_at, settings.seconds, percent],
    })
  ).rows[0];
  const fraction = sample === undefined || sample.sampled === 0 ? 0 : sample.retroactive / sample.sampled;
  if (fraction <= limit) return { stop: null, startedAt };
  await pool.query({ ...recordTrip, values: [task, fraction, settings.text] });
  return { stop: { fraction }, startedAt };
}

/** After a run that drained: what the next run's check compares with. */
export async function recordDrainedRun(pool: pg.Pool, task: ScheduledTaskName, startedAt: number): Promise<void> {
  await pool.query({ ...recordDrained, values: [task, startedAt] });
}

export interface BlastStop {
  readonly task: string;
  readonly fraction: number;
  readonly trippedAt: Date;
  readonly settings: string;
}

/** The stops no operator has confirmed (for status and the gauge); a stop under other settings is listed too, marked by its settings. */
export async function readBlastStops(db: pg.Pool | pg.ClientBase): Promise<BlastStop[]> {
  const { rows } = await db.query<GuardRow>(readGuards);
  return rows
    .filter((r) => r.tripped_at !== null && (r.confirmed_at === null || r.confirmed_at < r.tripped_at))
    .map((r) => ({ task: r.task, fraction: r.tripped_fraction ?? 1, trippedAt: new Date((r.tripped_at ?? 0) * 1000), settings: r.tripped_settings ?? '' }));
}

/** `confirm`: null when the task has no stop to confirm. */
export async function confirmBlastStop(db: pg.Pool | pg.ClientBase, task: string, reason: string): Promise<{ by: string; fraction: number } | null> {
  const { rows } = await db.query<GuardRow>({ ...confirmTrip, values: [task, reason] });
  const row = rows[0];
  return row === undefined ? null : { by: row.confirmed_by ?? '', fraction: row.tripped_fraction ?? 1 };
}
