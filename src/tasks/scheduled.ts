/**
 * What runs a scheduled task (queues.ts SCHEDULED_TASKS says the rest of it: queue, reason, brakes,
 * lanes, cron; tasks/pool-size.ts reads its lanes).
 *
 * A new scheduled task kind is an entry in SCHEDULED_TASKS, its run here (a Lane for the batch
 * engine, tasks/engine.ts, and its SQL under db/sql/), and its line in docs/CONTRACT.md.
 */
import type { ScheduledTaskName } from '../queues.ts';
import type { RunOptions, RunOutput } from './batching.ts';
import type { TaskContext } from './context.ts';
import { purgeExpired } from './purge-expired.ts';
import { reapIdle } from './reap-idle.ts';

export const RUNS: Record<ScheduledTaskName, (ctx: TaskContext, options: RunOptions) => Promise<RunOutput>> = {
  'purge-expired': (ctx, options) => purgeExpired(ctx, options),
  'reap-idle': (ctx, options) => reapIdle(ctx, options),
};
