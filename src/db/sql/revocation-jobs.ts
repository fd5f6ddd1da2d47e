/**
 * What the revoke consumer asks the database about a job before and after carrying it out
 * (src/revoke-consumer.ts), beside the revocation's own statements (db/sql/revoke.ts).
 */
import { quote, type Statement } from './identifiers.ts';

/**
 * The clock skew allowed between a producer and the database: an issuedBefore later than the
 * database's now() plus this is refused (sessions that do not exist yet cannot be revoked). Frozen
 * into sql/migrations/000004.sql as the same interval, for the SQL functions.
 */
export const ISSUED_BEFORE_MAX_SKEW = '5 minutes';

/** $1 the request's issuedBefore: true when it is later than now() + the skew, against the database clock. */
export const issuedBeforeTooLate: Statement = {
  name: 'sj_issued_before_too_late',
  text: `SELECT $1::timestamptz > now() + interval '${ISSUED_BEFORE_MAX_SKEW}' AS too_late`,
};

/**
 * $1 the queue, $2 the job id: lets the job's dedupe key go, for a request dead-lettered as invalid
 * (a corrected request with the same key must not be refused as a duplicate for 7 days). pg-boss's
 * unique index of keyed jobs (job_i4: name, singleton_on, singleton_key, state not cancelled) covers
 * rows with a singleton_on only; singleton_key stays, so revocation_by_key still finds the job.
 */
export const freeDedupeKey = (pgbossSchema: string): Statement => ({
  name: `sj_free_dedupe_key_${pgbossSchema}`.slice(0, 63),
  text: `UPDATE ${quote(pgbossSchema)}.job SET singleton_on = NULL WHERE name = $1 AND id = $2 AND singleton_on IS NOT NULL`,
});
