/**
 * The throttle's probe (tasks/throttle.ts): replica lag and a running vacuum of the table, in one
 * round trip, at most once a second during a purge.
 *
 * Both views hide the columns read here from a role without the privileges of pg_read_all_stats
 * (pg_monitor has them): lag columns and relid are then NULL, and the probe says "unknown" (NULL)
 * rather than "no lag" or "no vacuum", so that the throttle can tell the two apart.
 *
 * Lag: the worst of write_lag and replay_lag over the replicas pg_stat_replication lists. NULL
 * lag columns for a role that may see them mean the replica has caught up and is idle: 0.
 * A replica that is disconnected is not listed, so its lag is not seen (its slot retains WAL).
 *
 * $1: the table, schema-qualified and quoted (a regclass literal).
 */
import type { Statement } from './identifiers.ts';

export const throttleProbe: Statement = {
  name: 'sj_throttle_probe',
  text: `SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS privileged,
       (SELECT coalesce(max(extract(epoch FROM greatest(write_lag, replay_lag))), 0)::float8 FROM pg_stat_replication) AS lag_seconds,
       EXISTS (SELECT 1 FROM pg_stat_progress_vacuum WHERE relid = to_regclass($1::text)) AS vacuum_running`,
};

export interface ProbeRow {
  readonly privileged: boolean;
  readonly lag_seconds: number;
  readonly vacuum_running: boolean;
}
