/**
 * The consumers of the scheduled queues (queues.ts scheduledTasks), wrapped with the job metrics
 * and one structured log line per run. A handler stops between batches when the worker shuts down,
 * and reports how it stopped in the job output, so the job completes rather than being failed by
 * pg-boss's stop.
 */
import type { PgBoss } from 'pg-boss';
import type { Logger } from '../logger.ts';
import { scheduledTasks } from '../queues.ts';
import type { RunOutput } from '../tasks/batching.ts';
import type { TaskContext } from '../tasks/context.ts';
import { HeldBack } from '../tasks/held-back.ts';
import { runOf } from '../tasks/scheduled.ts';
import { instrumented } from './instrumented.ts';

/** A task without a cron (JANITOR_IDLE_TIMEOUT=off) has no consumer; ensureSchedules removes its schedule. */
export async function registerScheduledConsumers(boss: PgBoss, ctx: TaskContext, shutdown: AbortSignal, log: Logger): Promise<void> {
  for (const descriptor of scheduledTasks(ctx.config)) {
    const { task, queue, cron } = descriptor;
    if (cron(ctx.config) === null) continue;
    const run = runOf(descriptor);
    await boss.work<object, RunOutput>(queue, { pollingIntervalSeconds: 2 }, async ([job]) => {
      if (!job) throw new Error(`pg-boss handed ${queue} an empty batch`);
      const started = performance.now();
      // The run's waits (latency guard, throttle) go to the log line below, not to the job output,
      // whose shape is the contract's.
      const heldBack = new HeldBack(ctx.metrics, task);
      let output: RunOutput;
      try {
        output = await instrumented(ctx.metrics, queue, () => run(ctx, { signal: AbortSignal.any([job.signal, shutdown]), heldBack }));
      } catch (error) {
        // Without this line a failing purge or reap (a missing table, a revoked grant) left no trace
        // in the log: only the metrics and the job's stored output told.
        log.error(
          { queue, jobId: job.id, attempt: job.retryCount + 1, seconds: round((performance.now() - started) / 1000), err: error },
          `${queue} run failed: pg-boss retries it with backoff, then dead-letters it`,
        );
        throw error;
      }
      log.info({ queue, jobId: job.id, ...output, seconds: round((performance.now() - started) / 1000), ...heldBack.summary }, `${queue} run finished`);
      return output;
    });
  }
}

const round = (seconds: number) => Math.round(seconds * 1000) / 1000;
