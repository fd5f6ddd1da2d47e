/** The one rule for the size of a connection pool that runs tasks. */
import type { Config } from '../config.ts';
import { scheduledTasks } from '../queues.ts';

/** The latency guard's probe: one connection per run while it runs (tasks/latency-probe.ts). */
const GUARD_CONNECTIONS = 1;

/**
 * Connections a pool needs: the lanes of the scheduled tasks it may run at once, one per concurrent
 * revocation, the latency guard's probe, and `own` for the process's own statements. The worker
 * runs every scheduled task and JANITOR_REVOKE_CONCURRENCY revocations, with two of its own
 * (gauges, readiness pings); a one-shot command runs one task, with one. A large revocation borrows
 * a second connection only when one is free at that moment.
 */
export function poolSize(config: Config, uses: { readonly tasks: 'all' | 'one'; readonly revocations: number; readonly own: number }): number {
  const lanes = scheduledTasks(config).map((t) => t.lanes(config));
  const taskLanes = uses.tasks === 'all' ? lanes.reduce((a, b) => a + b, 0) : Math.max(...lanes);
  // The extra tables of JANITOR_PURGE_TABLES run at the same tick as the sessions table's purge,
  // each run with its own guard probe: one more connection each (a one-shot command runs them in turn).
  const extraGuards = uses.tasks === 'all' && config.latencyGuardFactor !== null ? config.purgeTables.length : 0;
  return taskLanes + uses.revocations + GUARD_CONNECTIONS + extraGuards + uses.own;
}
