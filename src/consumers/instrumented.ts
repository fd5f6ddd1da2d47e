/** The job metrics of every consumer: outcome and duration per queue. */
import type { Metrics } from '../metrics.ts';
import type { QueueName } from '../queues.ts';

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
