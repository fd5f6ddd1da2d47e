/** What `session-janitor status` reads beyond pg-boss's API: the latest run of each queue. */
import { quote, type Statement } from './identifiers.ts';
import { instantText } from './timestamps.ts';

/** The newest job of queue $1, whatever its state; its times as instantText (timestamps.ts). */
export function latestJob(pgbossSchema: string): Statement {
  return {
    name: `sj_status_latest_job_${pgbossSchema}`.slice(0, 63),
    text: `SELECT state, ${instantText('created_on')} AS created_on, ${instantText('completed_on')} AS completed_on, output
  FROM ${quote(pgbossSchema)}.job
 WHERE name = $1
 ORDER BY created_on DESC
 LIMIT 1`,
  };
}
