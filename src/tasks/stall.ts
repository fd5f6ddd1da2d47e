/**
 * A run that deleted nothing while rows were left to delete: said in the log (warn) and counted in
 * session_janitor_stalled_runs_total, which the SessionJanitorRunsStalled alert reads. Without it
 * such a run ends as a quiet 'time-budget' or 'drained', and a run that can never progress (rows
 * held by a transaction that never ends, a lock_timeout as long as the run) looks like any other.
 *
 * Stalled: nothing deleted and either ids left held by other transactions (the by-id fallback of
 * tasks/held-rows.ts gave up on them), or the time budget ended before one batch completed. A
 * reaper run that walked empty ranges for its whole budget moved its position: not stalled.
 */
import type { ScheduledTaskName } from '../queues.ts';
import type { RunOutput } from './batching.ts';
import type { TaskContext } from './context.ts';
import type { HeldRows } from './held-rows.ts';

export function isStalled(output: RunOutput, held: HeldRows): boolean {
  if (
    output.deleted > 0 ||
    output.stoppedBy === 'shutdown' ||
    output.stoppedBy === 'paused' ||
    output.stoppedBy === 'clock-skew' ||
    output.stoppedBy === 'blast-radius'
  )
    return false;
  return held.left > 0 || (output.stoppedBy === 'time-budget' && output.batches === 0);
}

export function reportStall({ log, metrics, config }: TaskContext, task: ScheduledTaskName, output: RunOutput, held: HeldRows): void {
  if (!isStalled(output, held)) return;
  metrics.stalledRuns.inc({ task });
  log.warn(
    { task, stoppedBy: output.stoppedBy, batches: output.batches, heldLeft: held.left, lockTimeoutMs: config.lockTimeoutMs },
    `${task} deleted nothing this run while rows were left to delete: rows held by other transactions (long or idle-in-transaction sessions, savepoints) or a time budget too short for one batch; see the runbook, SessionJanitorRunsStalled`,
  );
}
