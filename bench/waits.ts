/**
 * What the refresh workload's backends wait on (SJ_BENCH_WAIT_EVENTS=1, case 4): a connection of
 * its own polls pg_stat_activity every few milliseconds and records, for every active workload
 * backend, its wait event ("CPU" when it has none: running or runnable). The tally of a window
 * says where a transaction's time goes there: WAL flushes (IO:WalSync, LWLock:WALWrite), WAL
 * buffers (LWLock:WALBufMapping), locks, or the CPU. A diagnostic: polling costs a little CPU
 * itself, so figures of runs with it on are not compared with runs without.
 */
import pg from 'pg';
import { sleep } from './stats.ts';

const POLL = `SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event
                FROM pg_stat_activity
               WHERE application_name = 'sj-bench-workload' AND state = 'active'`;

/** [epoch ms, event] */
type WaitSample = readonly [number, string];

export interface WaitSampler {
  /** Events seen in [from, to), most frequent first, as shares of all samples there. */
  tally(from: number, to: number): string;
  stop(): Promise<void>;
}

export async function sampleWaits(url: string, intervalMs = 2): Promise<WaitSampler> {
  const client = new pg.Client({ connectionString: url, application_name: 'sj-bench-waits' });
  await client.connect();
  const samples: WaitSample[] = [];
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const at = Date.now();
      const { rows } = await client.query<{ event: string }>({ name: 'sj_bench_waits', text: POLL });
      for (const { event } of rows) samples.push([at, event]);
      await sleep(intervalMs);
    }
  })();
  return {
    tally(from, to) {
      const counts = new Map<string, number>();
      let total = 0;
      for (const [at, event] of samples) {
        if (at < from || at >= to) continue;
        counts.set(event, (counts.get(event) ?? 0) + 1);
        total += 1;
      }
      if (total === 0) return 'no active backend seen';
      return (
        [...counts]
          .sort((a, b) => b[1] - a[1])
          .map(([event, n]) => `${event} ${((100 * n) / total).toFixed(0)}%`)
          .join(', ') + ` (${total} samples)`
      );
    },
    async stop() {
      stopping = true;
      await loop;
      await client.end();
    },
  };
}
