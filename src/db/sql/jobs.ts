/** What the revoke consumer reads of pg-boss's job table beyond what pg-boss hands it. */
import { quote, type Statement } from './identifiers.ts';

/**
 * The data of job $2 (uuid) of queue $1 as jsonb prints it: every number exactly as it was
 * enqueued, which the object pg-boss hands over (JSON.parse in node-pg) is not. And the job's age,
 * seconds since pg-boss's created_on by the database's clock (the start of the revocation latency:
 * no clock of a pod is compared with the database's).
 */
export function jobDataText(pgbossSchema: string): Statement {
  return {
    name: `sj_job_data_${pgbossSchema}`.slice(0, 63),
    text: `SELECT data::text AS data, EXTRACT(EPOCH FROM clock_timestamp() - created_on)::float8 AS age_seconds FROM ${quote(pgbossSchema)}.job WHERE name = $1 AND id = $2::uuid`,
  };
}
