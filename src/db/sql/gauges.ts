/**
 * The statements behind the cluster-wide gauges. Each is cheap on a table of tens of millions of
 * rows: the backlog reads the expires_at index (a min() is one index probe; the count stops at the
 * cap), the last success reads pg-boss's job table for two queues.
 */
import type { QualifiedName } from '../../config.ts';
import { qualified, quote, statementName, type Statement } from './identifiers.ts';
import { asTarget, type PurgeTarget } from './purge-target.ts';

/**
 * The sessions table, or an extra table of JANITOR_PURGE_TABLES on its expiry column (`sessions`:
 * its rows). $1 grace in seconds, $2 cap. `oldest`: how long the oldest purgeable session has waited since it
 * became purgeable (expiry plus grace), 0 when there is none.
 *
 * Sessions that expire at '-infinity' are counted, but their wait is unknown (an expires_at set to
 * '-infinity' at logout says nothing of when), and arithmetic on them fails (PostgreSQL 15, 16) or
 * is infinite (17 and later): `oldest` is that of the oldest finite one, 0 when there is none. A
 * purge that cannot delete them still shows in the count and in its failed runs.
 */
export function expiredBacklog(target: QualifiedName | PurgeTarget): Statement {
  const { table, expiry } = asTarget(target);
  const t = qualified(table);
  const e = quote(expiry);
  const cutoff = 'now() - make_interval(secs => $1::float8)';
  return {
    name: statementName('gauge_backlog', table),
    text: `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${t} WHERE ${e} < ${cutoff} LIMIT $2::bigint) AS capped)::bigint AS sessions,
       coalesce(extract(epoch FROM ${cutoff} - (SELECT min(${e}) FROM ${t} WHERE ${e} > '-infinity' AND ${e} < ${cutoff})), 0)::float8 AS oldest_seconds`,
  };
}

/** Unix time of the last completed job of each queue in $1 (text[]), from pg-boss's job history. */
export function lastCompleted(pgbossSchema: string): Statement {
  return {
    name: `sj_gauge_last_completed_${pgbossSchema}`.slice(0, 63),
    text: `SELECT name, extract(epoch FROM max(completed_on))::float8 AS completed_at
  FROM ${quote(pgbossSchema)}.job
 WHERE name = ANY($1::text[]) AND state = 'completed'
 GROUP BY name`,
  };
}
