/** Messages between the benchmark and its child processes (purge-child.ts, workload-child.ts). */
import type { RunOutput } from '../src/tasks/batching.ts';
import type { HeldBackSummary } from '../src/tasks/held-back.ts';

/** run: request is the RevokeRequest of SJ_BENCH_TASK=revoke. */
export type ParentMessage = { readonly type: 'run'; readonly request?: unknown } | { readonly type: 'stop' };

export type ChildResult =
  | {
      readonly type: 'result';
      readonly output: RunOutput;
      readonly elapsedMs: number;
      /** Epoch milliseconds, to cut the workload's samples to the purge's window. */
      readonly startedAt: number;
      readonly endedAt: number;
      /** [rows, milliseconds] of every batch. */
      /** Each batch: rows, milliseconds, and when it ended (Date.now()). */
      readonly batches: ReadonlyArray<readonly [number, number, number]>;
      /** process.memoryUsage.rss() sampled every 10 ms during the run. */
      readonly rssSampledMaxBytes: number;
      /** getrusage's ru_maxrss: the process's peak RSS from its start, exact. */
      readonly maxRssBytes: number;
      /** session_janitor_batch_duration_seconds: [le, cumulative count] (for a task without onBatch). */
      readonly histogram: ReadonlyArray<readonly [number, number]>;
      /** What held the task back (the latency guard, the throttle): tasks/held-back.ts. */
      readonly heldBack?: HeldBackSummary;
    }
  | { readonly type: 'error'; readonly message: string };

/** One refresh-workload transaction: completion time (epoch ms), latency (ms), kind, failed. */
export type WorkloadSample = readonly [number, number, 'update' | 'insert' | 'select', boolean];

export type WorkloadMessage =
  { readonly type: 'ready'; readonly jtis: number } | { readonly type: 'samples'; readonly samples: readonly WorkloadSample[]; readonly lateStarts: number };
