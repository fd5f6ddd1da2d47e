/**
 * Pauses (`session-janitor pause <task|all> --for DURATION --reason TEXT`, `resume`): stored in
 * session_janitor.pause (migration 8), so that every replica obeys the same one. A run of a paused
 * task stops at its next batch boundary, as on shutdown, and reports `stoppedBy: "paused"`; a run
 * that starts while its task is paused deletes nothing. A pause always ends by itself, at most
 * MAX_PAUSE_SECONDS after it was set or renewed: a forgotten one must not let the table grow for
 * ever. `all` is every scheduled task (the purge and the reaper), never the revocations: they are a
 * security function (a stolen token is revoked through them), and an operator easing the load
 * during an incident must not stop them by accident. They are paused by their own name only
 * (`pause revoke`; consumers/revoke-pause.ts: a replica stops taking revocation jobs, the queued
 * ones wait), for the rare incident they are the cause of (docs/runbook.md, "Incidents: pause,
 * check, resume or confirm").
 */
import type pg from 'pg';
import { activePauses, clearPause, isPaused, setPause, type PauseRow } from '../db/sql/pause.ts';
import { SCHEDULED_TASKS, type ScheduledTask, type ScheduledTaskName } from '../queues.ts';

/** The longest pause one command sets (24 h): longer is a renewal, which the alerts count. */
export const MAX_PAUSE_SECONDS = 86_400;

/** What `all` pauses: the scheduled tasks, not the revocations. */
export const PAUSABLE: readonly ScheduledTaskName[] = SCHEDULED_TASKS.map((t) => t.task);

/** A task a pause may name: the scheduled ones, and the revocations by their own name only. */
export type PausableTask = ScheduledTaskName | 'revoke';

/** The pause a scheduled task obeys: its own; an extra table's purge is the purge, `pause purge-expired` (and `all`) pause it too. */
export const pauseOf = (task: ScheduledTask): ScheduledTaskName => (task.table === undefined ? task.task : 'purge-expired');

/** Every task a pause row may hold, `all`'s and the revocations: the gauges' closed label set. */
export const PAUSE_TASKS: readonly PausableTask[] = [...PAUSABLE, 'revoke'];

/**
 * How often a run reads its pause at most: 0, before every batch, so that a pause stops a run within
 * the batch in flight. The read is one primary-key lookup in a table of at most three rows, on the
 * lane's own connection, against a batch that aims at tens of milliseconds (JANITOR_BATCH_TARGET_MS).
 * The purge's batches read it in their first statement instead (db/sql/purge-expired.ts, BoundRow.paused):
 * as a statement of its own it was about a tenth of a 5000-row batch (docs/performance.md).
 */
export const PAUSE_CHECK_INTERVAL_MS = 0;

export interface Pause {
  readonly task: string;
  readonly reason: string;
  /** The database role (current_user) that set or last renewed it. */
  readonly pausedBy: string;
  readonly since: Date;
  readonly until: Date;
  /** How often it was renewed while in force. */
  readonly renewals: number;
}

const unknownTask = (target: string, known: readonly string[]) => `unknown task ${JSON.stringify(target)}: one of ${[...known, 'all'].join(', ')}`;

/** The scheduled tasks a target names (`confirm`'s: no guard watches the revocations), or an error message. */
export function scheduledTargets(target: string): readonly ScheduledTaskName[] | string {
  if (target === 'all') return PAUSABLE;
  const task = PAUSABLE.find((t) => t === target);
  return task === undefined ? unknownTask(target, PAUSABLE) : [task];
}

/** The tasks a `pause`/`resume` target names: `all`'s, or the revocations by their own name; or an error message. */
export function pauseTargets(target: string): readonly PausableTask[] | string {
  if (target === 'revoke') return ['revoke'];
  const tasks = scheduledTargets(target);
  return typeof tasks === 'string' ? unknownTask(target, PAUSE_TASKS) : tasks;
}

const fromRow = (row: PauseRow): Pause => ({
  task: row.task,
  reason: row.reason,
  pausedBy: row.paused_by,
  since: new Date(row.since * 1000),
  until: new Date(row.until * 1000),
  renewals: row.renewals,
});

export async function pauseTasks(db: pg.Pool | pg.ClientBase, tasks: readonly string[], seconds: number, reason: string): Promise<Pause[]> {
  const { rows } = await db.query<PauseRow>({ ...setPause, values: [tasks, seconds, reason] });
  return rows.map(fromRow);
}

/** The pauses in force among `tasks` that were ended. */
export async function resumeTasks(db: pg.Pool | pg.ClientBase, tasks: readonly string[]): Promise<Pause[]> {
  const { rows } = await db.query<PauseRow>({ ...clearPause, values: [tasks] });
  return rows.filter((r) => r.until > r.now).map(fromRow);
}

/** Whether the task is paused now (one primary-key lookup). */
export async function taskPaused(db: pg.Pool | pg.ClientBase, task: PausableTask): Promise<boolean> {
  const { rows } = await db.query<{ paused: boolean }>({ ...isPaused, values: [task] });
  return rows[0]?.paused === true;
}

export async function readPauses(db: pg.Pool | pg.ClientBase): Promise<Pause[]> {
  const { rows } = await db.query<PauseRow>(activePauses);
  return rows.map(fromRow);
}

/**
 * A run's view of its task's pause: read at most once per `intervalMs`, on whichever connection asks
 * (a lane's, between its batches), lanes asking at once sharing one read.
 */
export class PauseCheck {
  readonly #task: string;
  readonly #intervalMs: number;
  #readAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<boolean> | null = null;
  #paused = false;

  constructor(task: string, intervalMs = PAUSE_CHECK_INTERVAL_MS) {
    this.#task = task;
    this.#intervalMs = intervalMs;
  }

  async paused(db: pg.Pool | pg.ClientBase): Promise<boolean> {
    if (this.#paused) return true; // a run that saw its pause stops: no lane goes on
    if (this.#reading !== null) return this.#reading;
    if (performance.now() - this.#readAt < this.#intervalMs) return false;
    this.#reading = db
      .query<{ paused: boolean }>({ ...isPaused, values: [this.#task] })
      .then(({ rows }) => {
        this.#paused = rows[0]?.paused === true;
        return this.#paused;
      })
      .finally(() => {
        this.#readAt = performance.now();
        this.#reading = null;
      });
    return this.#reading;
  }
}
