/**
 * The pg-boss consumers: each queue's handler, wrapped with the job metrics and one structured log
 * line per run. A handler stops between batches when the worker shuts down, and reports how it
 * stopped in the job output, so the job completes rather than being failed by pg-boss's stop.
 */
import type { PgBoss } from 'pg-boss';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';
import { QUEUES, type QueueName } from './queues.ts';
import { registerRevokeConsumer } from './revoke-consumer.ts';
import type { RunOutput } from './tasks/batching.ts';
import type { TaskContext } from './tasks/context.ts';
import { purgeExpired } from './tasks/purge-expired.ts';
import { reapIdle } from './tasks/reap-idle.ts';

/** Runs fn as the job of queue, counting its outcome and duration. */
export async function instrumented<T>(metrics: Metrics, queue: QueueName, fn: () => Promise<T>): Promise<T> {
  const stopTimer = metrics.jobDuration.startTimer({ queue });
  try {
    const result = await fn();
    metrics.jobs.inc({ queue, outcome: 'completed' });
    return result;
  } catch (error) {
    metrics.jobs.inc({ queue, outcome: 'failed' });
    throw error;
  } finally {
    stopTimer();
  }
}

export interface ScheduledTask {
  readonly queue: QueueName;
  /** Whether this worker consumes the queue at all under config; absent: always. */
  readonly enabled?: (config: Config) => boolean;
  readonly run: (ctx: TaskContext, signal: AbortSignal) => Promise<RunOutput>;
}

export const SCHEDULED_TASKS: readonly ScheduledTask[] = [
  { queue: QUEUES.purgeExpired, run: (ctx, signal) => purgeExpired(ctx, { signal }) },
  // JANITOR_IDLE_TIMEOUT=off: no consumer (and ensureSchedules removes the schedule).
  { queue: QUEUES.reapIdle, enabled: (config) => config.idleTimeoutSeconds !== null, run: (ctx, signal) => reapIdle(ctx, { signal }) },
];

export async function registerConsumers(boss: PgBoss, ctx: TaskContext, shutdown: AbortSignal, log: Logger): Promise<void> {
  for (const task of SCHEDULED_TASKS) {
    if (task.enabled?.(ctx.config) === false) continue;
    await boss.work<object, RunOutput>(task.queue, { pollingIntervalSeconds: 2 }, async ([job]) => {
      if (!job) throw new Error(`pg-boss handed ${task.queue} an empty batch`);
      const started = performance.now();
      let output: RunOutput;
      try {
        output = await instrumented(ctx.metrics, task.queue, () => task.run(ctx, AbortSignal.any([job.signal, shutdown])));
      } catch (error) {
        // Without this line a failing purge or reap (a missing table, a revoked grant) left no trace
        // in the log: only the metrics and the job's stored output told.
        log.error(
          { queue: task.queue, jobId: job.id, attempt: job.retryCount + 1, seconds: round((performance.now() - started) / 1000), err: error },
          `${task.queue} run failed: pg-boss retries it with backoff, then dead-letters it`,
        );
        throw error;
      }
      log.info({ queue: task.queue, jobId: job.id, ...output, seconds: round((performance.now() - started) / 1000) }, `${task.queue} run finished`);
      return output;
    });
  }
  await registerRevokeConsumer(boss, ctx, shutdown, log);
}

const round = (seconds: number) => Math.round(seconds * 1000) / 1000;
