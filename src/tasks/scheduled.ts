/**
 * What runs a scheduled task (queues.ts scheduledTasks says the rest of it: queue, reason, brakes,
 * lanes, cron, table; tasks/pool-size.ts reads its lanes).
 *
 * A new scheduled task kind is a descriptor in queues.ts, its run here (a Lane for the batch
 * engine, tasks/engine.ts, and its SQL under db/sql/), and its line in docs/CONTRACT.md. An extra
 * table of JANITOR_PURGE_TABLES is the purge's kind on another table (queues.ts purgeTableTask).
 */
import type { ScheduledTask } from '../queues.ts';
import type { RunOptions, RunOutput } from './batching.ts';
import type { TaskContext } from './context.ts';
import { purgeExpired, purgeTable } from './purge-expired.ts';
import { reapIdle } from './reap-idle.ts';

export function runOf(task: ScheduledTask): (ctx: TaskContext, options: RunOptions) => Promise<RunOutput> {
  const { table } = task;
  if (table !== undefined) return (ctx, options) => purgeTable(ctx, table, options);
  return task.task === 'reap-idle' ? (ctx, options) => reapIdle(ctx, options) : (ctx, options) => purgeExpired(ctx, options);
}
