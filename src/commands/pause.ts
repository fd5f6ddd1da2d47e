/**
 * `session-janitor pause <task|all> --for DURATION --reason TEXT` and `session-janitor resume
 * <task|all>`: tasks/pause.ts says what a pause does. Both print one line per task on stdout. The
 * role needs DML on session_janitor.pause (the worker's, sql/roles.sql); a producer role may not.
 */
import { parseDurationSeconds } from '../config.ts';
import { SQLSTATE, safeErrorMessage, sqlState } from '../db/errors.ts';
import { confirmBlastStop } from '../tasks/blast-guard.ts';
import { MAX_PAUSE_SECONDS, pauseTargets, pauseTasks, resumeTasks, scheduledTargets, type Pause } from '../tasks/pause.ts';
import { setup, withTaskContext } from './common.ts';
import { fail } from './process-edge.ts';
import { EXIT_USAGE } from './revoke.ts';

function targetsOf<T>(tasks: readonly T[] | string): readonly T[] {
  if (typeof tasks === 'string') fail(tasks, EXIT_USAGE);
  return tasks;
}

/** A role without the right gets the role that has it, not just "permission denied". */
function refusal(error: unknown, what: string): never {
  if (sqlState(error) === SQLSTATE.insufficientPrivilege)
    fail(`this role may not ${what} (${safeErrorMessage(error)}): run it as session_janitor_worker (sql/roles.sql), which may write session_janitor.pause`, 1);
  throw error;
}

const describe = (p: Pause) =>
  `${p.task} until ${p.until.toISOString()} (since ${p.since.toISOString()}, by ${p.pausedBy}, renewals ${p.renewals}): ${p.reason}`;

export async function pauseCommand(target: string, options: { for?: string; reason?: string }): Promise<void> {
  const tasks = targetsOf(pauseTargets(target));
  const seconds = options.for === undefined ? undefined : parseDurationSeconds(options.for);
  if (seconds === undefined || seconds < 1 || seconds > MAX_PAUSE_SECONDS)
    fail(`--for must be a duration from 1s to 24h, such as 30m or 2h (a pause always ends; renew it to pause longer)`, EXIT_USAGE);
  const reason = options.reason?.trim() ?? '';
  if (reason.length < 1 || reason.length > 500) fail('--reason is required: why, for whoever reads `status` (1 to 500 characters)', EXIT_USAGE);
  const { config, log } = setup();
  await withTaskContext(
    config,
    log,
    async (ctx) => {
      const pauses = await pauseTasks(ctx.pool, tasks, seconds, reason).catch((error: unknown) => refusal(error, 'pause'));
      for (const p of pauses) {
        log.warn({ task: p.task, pausedBy: p.pausedBy, reason: p.reason, until: p.until.toISOString(), renewals: p.renewals }, `${p.task} paused`);
        process.stdout.write(`paused ${describe(p)}\n`);
      }
    },
    'presence',
  );
}

export async function resumeCommand(target: string): Promise<void> {
  const tasks = targetsOf(pauseTargets(target));
  const { config, log } = setup();
  await withTaskContext(
    config,
    log,
    async (ctx) => {
      const ended = await resumeTasks(ctx.pool, tasks).catch((error: unknown) => refusal(error, 'resume'));
      for (const task of tasks) {
        const p = ended.find((e) => e.task === task);
        if (p !== undefined) log.warn({ task, pausedBy: p.pausedBy, reason: p.reason }, `${task} resumed`);
        process.stdout.write(p === undefined ? `${task} was not paused\n` : `resumed ${task} (was paused ${describe(p)})\n`);
      }
    },
    'presence',
  );
}

/** `session-janitor confirm <task> --reason TEXT`: lets a run the blast-radius guard stopped go on (tasks/blast-guard.ts). */
export async function confirmCommand(target: string, options: { reason?: string }): Promise<void> {
  const tasks = targetsOf(scheduledTargets(target));
  const reason = options.reason?.trim() ?? '';
  if (reason.length < 1 || reason.length > 500) fail('--reason is required: why the deletions are wanted, for the record (1 to 500 characters)', EXIT_USAGE);
  const { config, log } = setup();
  await withTaskContext(
    config,
    log,
    async (ctx) => {
      for (const task of tasks) {
        const confirmed = await confirmBlastStop(ctx.pool, task, reason).catch((error: unknown) => refusal(error, 'confirm'));
        if (confirmed === null) {
          process.stdout.write(`${task} has no blast-radius stop to confirm\n`);
          continue;
        }
        log.warn({ task, confirmedBy: confirmed.by, reason, fraction: confirmed.fraction }, `${task} blast-radius stop confirmed: its next run deletes`);
        process.stdout.write(
          `confirmed ${task} (by ${confirmed.by}): its next run deletes (${(confirmed.fraction * 100).toFixed(1)}% of the table retroactively): ${reason}\n`,
        );
      }
    },
    'presence',
  );
}
