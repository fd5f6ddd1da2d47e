/**
 * Purge expired sessions: every row with expires_at < now() - JANITOR_EXPIRED_GRACE, in batches of
 * one short statement each, walking the expires_at index with a cursor (see db/sql/purge-expired.ts
 * for the statement and why it has that shape).
 *
 * Several lanes (JANITOR_PURGE_CONCURRENCY connections) work at once: the single statement that is
 * the speed limit of a purge runs on one core, and a batched purge spends much of each batch on round
 * trips and commits, so two connections on disjoint ranges close most of the gap. The purgeable
 * range is cut into slices of equal time, four per lane, and each lane takes the next slice when
 * it finishes one, so a slice dense with rows does not leave the other lanes idle.
 */
import { SQLSTATE, sqlState } from '../db/errors.ts';
import { countPurgeable, purgeBatch, purgeBatchSkipLocked, purgeSliceBoundaries } from '../db/sql/purge-expired.ts';
import { AdaptiveBatchSize, RunBudget, type RunOptions, type RunOutput, type StoppedBy } from './batching.ts';
import type { TaskContext } from './context.ts';

const SLICES_PER_LANE = 4;

interface Slice {
  readonly from: string;
  readonly to: string;
}

interface BatchResult {
  readonly deleted: number;
  /** null: fewer rows than the batch size were left in the slice, so the slice is done. */
  readonly bound: string | null;
}

export async function purgeExpired(ctx: TaskContext, options: RunOptions = {}): Promise<RunOutput & { wouldDelete?: number }> {
  const { pool, config, metrics } = ctx;
  const grace = config.expiredGraceSeconds;
  if (options.dryRun) return { deleted: 0, batches: 0, stoppedBy: 'drained', wouldDelete: await countPurgeableSessions(ctx) };

  const budget = new RunBudget(config.maxRunSeconds, config.maxRunRows, options.signal);
  const slices = await planSlices(ctx, config.purgeConcurrency === 1 ? 1 : config.purgeConcurrency * SLICES_PER_LANE);
  // A failing lane stops the others at their next batch, then the run rethrows its error.
  const failed = new AbortController();
  let deleted = 0;
  let batches = 0;
  let stoppedBy: StoppedBy | null = null;

  const runBatch = async (slice: Slice, lower: string, lowerInclusive: boolean, size: number): Promise<BatchResult> => {
    const values = [lower, slice.to, grace, size];
    const started = performance.now();
    try {
      const { rows } = await pool.query<{ deleted: number; bound: string | null }>({ ...purgeBatch(config.sessionTable, lowerInclusive), values });
      return { deleted: rows[0]?.deleted ?? 0, bound: rows[0]?.bound ?? null };
    } catch (error) {
      if (sqlState(error) !== SQLSTATE.lockNotAvailable) throw error;
      // A concurrent transaction holds a row of this range: take the rest, leave that row for later.
      metrics.errors.inc({ kind: 'lock-timeout' });
      const { rows } = await pool.query<{ deleted: number; bound: string | null }>({
        ...purgeBatchSkipLocked(config.sessionTable, lowerInclusive),
        values,
      });
      return { deleted: rows[0]?.deleted ?? 0, bound: rows[0]?.bound ?? null };
    } finally {
      metrics.batchDuration.observe({ task: 'purge-expired' }, (performance.now() - started) / 1000);
    }
  };

  const lane = async () => {
    const size = new AdaptiveBatchSize(config.batchSize, config.batchMinSize, config.batchMaxSize, config.batchTargetMs);
    for (let slice = slices.shift(); slice !== undefined; slice = slices.shift()) {
      let lower = slice.from;
      let lowerInclusive = true;
      for (;;) {
        const stop = failed.signal.aborted ? 'shutdown' : budget.stopReason(deleted);
        if (stop !== null || stoppedBy !== null) {
          stoppedBy ??= stop;
          return;
        }
        const limit = Math.max(1, Math.min(size.size, budget.rowsLeft(deleted)));
        const started = performance.now();
        let result: BatchResult;
        try {
          result = await runBatch(slice, lower, lowerInclusive, limit);
        } catch (error) {
          if (sqlState(error) === SQLSTATE.queryCanceled && !size.atMinimum) {
            metrics.errors.inc({ kind: 'batch-timeout' });
            size.timedOut();
            continue;
          }
          throw error;
        }
        size.record(result.deleted, performance.now() - started);
        deleted += result.deleted;
        batches += 1;
        metrics.sessionsDeleted.inc({ reason: 'expired' }, result.deleted);
        options.onProgress?.({ deleted, batches, elapsedMs: budget.elapsedMs });
        if (result.bound === null) break;
        lower = result.bound;
        lowerInclusive = false;
      }
    }
  };

  const results = await Promise.allSettled(
    Array.from({ length: config.purgeConcurrency }, () =>
      lane().catch((error: unknown) => {
        failed.abort();
        throw error;
      }),
    ),
  );
  const failure = results.find((r) => r.status === 'rejected');
  if (failure) throw failure.reason;
  return { deleted, batches, stoppedBy: stoppedBy ?? 'drained' };
}

async function planSlices({ pool, config }: TaskContext, count: number): Promise<Slice[]> {
  const boundaries: string[] = [];
  if (count > 1) {
    const { rows } = await pool.query<{ boundary: string }>({
      ...purgeSliceBoundaries(config.sessionTable),
      values: [config.expiredGraceSeconds, count],
    });
    boundaries.push(...rows.map((r) => r.boundary));
  }
  const edges = ['-infinity', ...boundaries, 'infinity'];
  return edges.slice(1).map((to, i) => ({ from: edges[i] ?? '-infinity', to }));
}

/** Purgeable rows now: the ETA of the foreground command. */
export async function countPurgeableSessions({ pool, config }: TaskContext): Promise<number> {
  const { rows } = await pool.query<{ n: string }>({ ...countPurgeable(config.sessionTable), values: [config.expiredGraceSeconds] });
  return Number(rows[0]?.n ?? 0);
}
