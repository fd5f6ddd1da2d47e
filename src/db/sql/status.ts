/** What `session-janitor status` reads beyond pg-boss's API: the latest run of each queue. */
import { quote, type Statement } from './identifiers.ts';
import { instantText } from './timestamps.ts';

/**
 * The newest job of queue $1, whatever its state, and whether it records a manual run
 * (manual-runs.ts); its times as instantText (timestamps.ts). The
 * ORDER BY names j.created_on: a bare created_on would be the text output column.
 */
export function latestJob(pgbossSchema: string): Statement {
  return {
    name: `sj_status_latest_job_${pgbossSchema}`.slice(0, 63),
    text: `SELECT state, ${instantText('created_on')} AS created_on, ${instantText('completed_on')} AS completed_on, output,
       coalesce(data @> '{"manual": true}', false) AS manual
  FROM ${quote(pgbossSchema)}.job AS j
 WHERE name = $1
 ORDER BY j.created_on DESC
 LIMIT 1`,
  };
}
