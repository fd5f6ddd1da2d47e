/**
 * `session_janitor.enqueue_revocation(payload jsonb, dedupe_key text DEFAULT NULL) RETURNS uuid`:
 * enqueueing a revocation from any language, in one SQL call (../shared/CONTRACT.md), and
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
 * "the SQL function's job matches boss.send's" fails when the two drift apart.
 *
 * Dedupe: the revoke queue's policy is `standard`, where pg-boss ignores a bare singletonKey. A
 * dedupe_key is therefore stored as singleton_key together with a throttle slot (singleton_on)
 * spanning DEDUPE_SLOT_SECONDS, exactly what `boss.send(..., { singletonKey, singletonSeconds:
 * DEDUPE_SLOT_SECONDS })` stores (the Node client sends that): pg-boss's unique index on
 * (name, singleton_on, singleton_key) of every job not cancelled then turns a duplicate into
 * ON CONFLICT DO NOTHING and NULL. A key is thus taken for as long as its job is kept (queued,
 * active, retried, and after it ends until pg-boss deletes it: the queue's deleteAfterSeconds, 7
 * days), whatever the path it came by. The slot is one 68-year span from the Unix epoch, so no slot
 * boundary lets a duplicate through until 2038-01-19.
 *
 * SECURITY DEFINER: it runs with the rights of its owner (whoever ran `migrate`), so a producer
 * role needs only USAGE on schema session_janitor and EXECUTE on these functions; PUBLIC's EXECUTE
 * is revoked. search_path is pinned to pg_catalog, pg_temp and every other name is qualified, so a
 * caller cannot plant objects that the function would resolve. The pg-boss schema name is
 * PGBOSS_SCHEMA at the time of the migration (a validated identifier, quoted); changing it later
 * needs a new migration.
 */
import pg from 'pg';
import type { Config } from '../../config.ts';
import { QUEUES } from '../../queues.ts';
import { quote, type Statement } from './identifiers.ts';

export const ENQUEUE_FUNCTION = 'session_janitor.enqueue_revocation';
export const STATUS_FUNCTION = 'session_janitor.revocation_status';

/** The throttle slot of a dedupe key, in seconds: the largest pg-boss accepts (an integer column). */
export const DEDUPE_SLOT_SECONDS = 2_147_483_647;

const literal = (text: string): string => pg.escapeLiteral(text);

/** The notify channel of pg-boss 12.38 (plans.notifyChannelSql) for a schema given unquoted. */
const notifyChannel = (schema: string) => `('pgboss_' || left(encode(sha224(${literal(schema)}::bytea), 'hex'), 24))`;

/** The migration's SQL (migration 3 of db/sql/migrations.ts). */
export function revocationFunctionsSql(config: Config): string {
  const schema = config.pgbossSchema;
  const queue = literal(QUEUES.revoke);
  return `
    CREATE OR REPLACE FUNCTION session_janitor.enqueue_revocation(payload jsonb, dedupe_key text DEFAULT NULL)
    RETURNS uuid
    LANGUAGE plpgsql
    VOLATILE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $function$
    DECLARE
      q record;
      job_id uuid;
      enqueued_at timestamptz := pg_catalog.now();
    BEGIN
      IF dedupe_key IS NOT NULL AND (dedupe_key = '' OR pg_catalog.length(dedupe_key) > 255) THEN
        RAISE EXCEPTION 'dedupe_key must be 1 to 255 characters, or NULL' USING ERRCODE = 'invalid_parameter_value';
      END IF;

      SELECT qu.policy, qu.retry_limit, qu.retry_delay, qu.retry_backoff, qu.retry_delay_max, qu.expire_seconds,
             qu.retention_seconds, qu.deletion_seconds, qu.dead_letter, qu.heartbeat_seconds, qu.table_name, qu.notify
        INTO q
        FROM ${quote(schema)}.queue qu
       WHERE qu.name = ${queue};
      IF NOT FOUND THEN
        RAISE EXCEPTION 'the queue % does not exist in schema %: run session-janitor migrate', ${queue}, ${literal(schema)}
          USING ERRCODE = 'undefined_object';
      END IF;

      EXECUTE pg_catalog.format(
        'INSERT INTO %I.%I (name, data, priority, start_after, created_on, singleton_key, singleton_on,
                            expire_seconds, deletion_seconds, keep_until, retry_limit, retry_delay, retry_backoff,
                            retry_delay_max, policy, dead_letter, heartbeat_seconds)
         VALUES ($1, $2, 0, $3, $3, $4,
                 CASE WHEN $4 IS NULL THEN NULL
                      ELSE ''epoch''::timestamp + ''1s''::interval * ($5::float8 * floor(date_part(''epoch'', $3) / $5::float8)) END,
                 $6, $7, $3 + $8 * ''1s''::interval, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT DO NOTHING
         RETURNING id',
        ${literal(schema)}, q.table_name)
        INTO job_id
        USING ${queue}, payload, enqueued_at, dedupe_key, ${DEDUPE_SLOT_SECONDS},
              q.expire_seconds, q.deletion_seconds, q.retention_seconds, q.retry_limit, q.retry_delay,
              q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter, q.heartbeat_seconds;

      -- As pg-boss's send: one NOTIFY, delivered at commit, only for a job that was inserted.
      IF job_id IS NOT NULL AND q.notify THEN
        PERFORM pg_catalog.pg_notify(${notifyChannel(schema)}, ${queue});
      END IF;
      RETURN job_id;
    END
    $function$;

    COMMENT ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) IS
      'session-janitor: enqueue a RevokeRequest (see docs/producers.md) on queue ${QUEUES.revoke} with the queue''s retry, expiry, retention and dead-letter settings. Returns the job id, or NULL when dedupe_key was already used.';
    REVOKE ALL ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) FROM PUBLIC;

    CREATE OR REPLACE FUNCTION session_janitor.revocation_status(job_id uuid)
    RETURNS TABLE (state text, output jsonb, retry_count integer)
    LANGUAGE sql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $function$
      SELECT j.state::text, j.output, j.retry_count
        FROM ${quote(schema)}.job j
       WHERE j.name = ${queue} AND j.id = revocation_status.job_id
    $function$;

    COMMENT ON FUNCTION session_janitor.revocation_status(uuid) IS
      'session-janitor: state (created, retry, active, completed, failed, cancelled), output and retry count of a job of ${QUEUES.revoke}; no row once pg-boss has deleted the job.';
    REVOKE ALL ON FUNCTION session_janitor.revocation_status(uuid) FROM PUBLIC;`;
}

/** $1 the request (jsonb), $2 the dedupe key (text or null). */
export const enqueueRevocationCall: Statement = {
  name: 'sj_enqueue_revocation',
  text: `SELECT ${ENQUEUE_FUNCTION}($1::jsonb, $2::text) AS id`,
};

/** $1 the job id. */
export const revocationStatusCall: Statement = {
  name: 'sj_revocation_status',
  text: `SELECT state, output, retry_count FROM ${STATUS_FUNCTION}($1::uuid)`,
};
