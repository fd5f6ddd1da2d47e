/**
 * What the revoke consumer asks the database about a job before and after carrying it out
 * (src/revoke-consumer.ts), beside the revocation's own statements (db/sql/revoke.ts).
 */
import type { Statement } from './identifiers.ts';

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
