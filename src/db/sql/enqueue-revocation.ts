/**
 * The calls of the producer functions, which migrations create (frozen SQL: sql/migrations/000003.sql
 * and later, see db/sql/migrations.ts):
 *
 * `session_janitor.enqueue_revocation(payload jsonb, dedupe_key text DEFAULT NULL) RETURNS uuid`:
 * enqueueing a revocation from any language, in one SQL call (docs/CONTRACT.md), and
 * `session_janitor.revocation_status(job_id uuid)`: where that job stands, for a producer that has
 * no right on pg-boss's tables (the Node client's waitForRevocation uses it with a connection string).
 *
 * pg-boss has no SQL send. A bare INSERT into its job table would ignore the queue's retry, expiry,
 * retention and dead-letter settings, so the function does what pg-boss 12.38's send does
 * (plans.insertJobs, schema version 46): it reads the queue's row and copies retry_limit,
 * retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds,
 * keep_until = start_after + retention_seconds, policy, dead_letter and heartbeat_seconds into the
 * job, inserts into the queue's own table (queue.table_name: `job_common`, or the queue's partition),
 * and, when the queue has `notify` on, wakes the workers with the same pg_notify pg-boss sends, in
 * the same transaction, so a revocation is picked up at once rather than at the next poll (the
 * worker listens: useListenNotify). Re-check all of this on every pg-boss upgrade; the test
 * "the SQL function's job matches boss.send's" fails when the two drift apart, on a fresh database
 * and on one upgraded from each earlier migration. A fix is a new migration (CREATE OR REPLACE
 * FUNCTION), never an edit of a released one (db/sql/migrations.ts). Since migration 4 the insert
 * lives in session_janitor.insert_revocation, called by enqueue_revocation and
 * enqueue_global_revocation (issuedBefore without userId: a grant of its own), after the checks of
 * size and of issuedBefore; session_janitor.revocation_by_key(dedupe_key) lists a key's jobs.
 *
 * Dedupe: the revoke queue's policy is `standard`, where pg-boss ignores a bare singletonKey. A
 * dedupe_key, scoped by the calling role (`quote_ident(session_user) || '/' || key`, migration 4:
 * one producer cannot take another's key), is therefore stored as singleton_key together with a
 * throttle slot (singleton_on) spanning DEDUPE_SLOT_SECONDS, exactly what `boss.send(..., { singletonKey, singletonSeconds:
 * DEDUPE_SLOT_SECONDS })` stores (the Node client sends that): pg-boss's unique index on
 * (name, singleton_on, singleton_key) of every job not cancelled then turns a duplicate into
 * ON CONFLICT DO NOTHING and NULL. A key is thus taken for as long as its job is kept (queued,
 * active, retried, and after it ends until pg-boss deletes it: the queue's deleteAfterSeconds, 7
 * days), whatever the path it came by; except that the worker frees the key of a request it
 * dead-letters as invalid (db/sql/revocation-jobs.ts). The slot is one 68-year span from the Unix
 * epoch, so no slot boundary lets a duplicate through until 2038-01-19.
 *
 * SECURITY DEFINER: it runs with the rights of its owner (whoever ran `migrate`), so a producer
 * role needs only USAGE on schema session_janitor and EXECUTE on these functions; PUBLIC's EXECUTE
 * is revoked. search_path is pinned to pg_catalog, pg_temp and every other name is qualified, so a
 * caller cannot plant objects that the function would resolve. The pg-boss schema name is
 * PGBOSS_SCHEMA at the time of the migration (a validated identifier, quoted); changing it later
 * needs a new migration.
 */
import type { Statement } from './identifiers.ts';

export const ENQUEUE_FUNCTION = 'session_janitor.enqueue_revocation';
/** For issuedBefore without userId, which reaches every user: a grant of its own (migration 4). */
export const ENQUEUE_GLOBAL_FUNCTION = 'session_janitor.enqueue_global_revocation';
export const STATUS_FUNCTION = 'session_janitor.revocation_status';

/** The throttle slot of a dedupe key, in seconds: the largest pg-boss accepts (an integer column). */
export const DEDUPE_SLOT_SECONDS = 2_147_483_647;

/**
 * The largest request the SQL functions accept, in bytes of its jsonb text (frozen into
 * sql/migrations/000004.sql, with MAX_IDS). Every valid request is smaller: the schema of
 * revoke-request.ts bounds each field (100000 ids, 200 characters of text, no unknown field), about
 * 4.1 MB at most, so the Node client, which validates first, never sends a larger one.
 */
export const MAX_PAYLOAD_BYTES = 5_000_000;

/** $1 the request (jsonb), $2 the dedupe key (text or null). */
export const enqueueRevocationCall: Statement = {
  name: 'sj_enqueue_revocation',
  text: `SELECT ${ENQUEUE_FUNCTION}($1::jsonb, $2::text) AS id`,
};

/** enqueueRevocationCall for a request that reaches every user. */
export const enqueueGlobalRevocationCall: Statement = {
  name: 'sj_enqueue_global_revocation',
  text: `SELECT ${ENQUEUE_GLOBAL_FUNCTION}($1::jsonb, $2::text) AS id`,
};

/**
 * $1 the producer's dedupe key: the key as the SQL functions store it, scoped by the calling role
 * (sql/migrations/000004.sql), for the client's boss.send.
 */
export const scopedDedupeKey: Statement = {
  name: 'sj_scoped_dedupe_key',
  text: `SELECT pg_catalog.quote_ident(session_user::text) || '/' || $1::text AS key`,
};

/** $1 the job id. */
export const revocationStatusCall: Statement = {
  name: 'sj_revocation_status',
  text: `SELECT state, output, retry_count FROM ${STATUS_FUNCTION}($1::uuid)`,
};
