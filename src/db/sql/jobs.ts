/** What the revoke consumer reads of pg-boss's job table beyond what pg-boss hands it. */
import { quote, type Statement } from './identifiers.ts';

/**
 * The data of job $2 (uuid) of queue $1 as jsonb prints it: every number exactly as it was
 * enqueued, which the object pg-boss hands over (JSON.parse in node-pg) is not. And the job's age,
 * seconds since pg-boss's created_on by the database's clock (the start of the revocation latency:
 * no clock of a pod is compared with the database's).
 *
 * Data longer than $3 characters is first checked by the database for the bounded shape of a
 * request (session_janitor.revocation_shape_issue, migration 7): when it has not, `issue` says why
 * and `data` is NULL, so that the worker never reads, let alone parses, a large payload that no
 * request is (a million empty objects). Small data is returned as it is: the worker's validation
 * lists all of its issues.
 */
export function jobDataText(pgbossSchema: string): Statement {
  return {
    name: `sj_job_data_${pgbossSchema}`.slice(0, 63),
    text: `SELECT CASE WHEN checked.issue IS NULL THEN checked.data::text END AS data, checked.issue, checked.age_seconds
  FROM (SELECT j.data,
               CASE WHEN octet_length(j.data::text) > $3::integer THEN session_janitor.revocation_shape_issue(j.data) END AS issue,
               EXTRACT(EPOCH FROM clock_timestamp() - j.created_on)::float8 AS age_seconds
          FROM ${quote(pgbossSchema)}.job j
         WHERE j.name = $1 AND j.id = $2::uuid) AS checked`,
  };
}
