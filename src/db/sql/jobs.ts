/** What the revoke consumer reads of pg-boss's job table beyond what pg-boss hands it. */
import { quote, type Statement } from './identifiers.ts';

/**
 * The data of job $2 (uuid) of queue $1 as jsonb prints it: every number exactly as it was
 * enqueued, which the object pg-boss hands over (JSON.parse in node-pg) is not.
 */
export function jobDataText(pgbossSchema: string): Statement {
  return {
    name: `sj_job_data_${pgbossSchema}`.slice(0, 63),
    text: `SELECT data::text AS data FROM ${quote(pgbossSchema)}.job WHERE name = $1 AND id = $2::uuid`,
  };
}
