-- session_janitor migration 3: session_janitor.enqueue_revocation and revocation_status (db/sql/enqueue-revocation.ts)
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
    FROM {{pgboss_schema}}.queue qu
   WHERE qu.name = 'refresh-session.revoke';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the queue % does not exist in schema %: run session-janitor migrate', 'refresh-session.revoke', {{pgboss_schema_literal}}
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
    {{pgboss_schema_literal}}, q.table_name)
    INTO job_id
    USING 'refresh-session.revoke', payload, enqueued_at, dedupe_key, 2147483647,
          q.expire_seconds, q.deletion_seconds, q.retention_seconds, q.retry_limit, q.retry_delay,
          q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter, q.heartbeat_seconds;

  -- As pg-boss's send: one NOTIFY, delivered at commit, only for a job that was inserted.
  IF job_id IS NOT NULL AND q.notify THEN
    PERFORM pg_catalog.pg_notify(('pgboss_' || left(encode(sha224({{pgboss_schema_literal}}::bytea), 'hex'), 24)), 'refresh-session.revoke');
  END IF;
  RETURN job_id;
END
$function$;

COMMENT ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) IS
  'session-janitor: enqueue a RevokeRequest (see docs/producers.md) on queue refresh-session.revoke with the queue''s retry, expiry, retention and dead-letter settings. Returns the job id, or NULL when dedupe_key was already used.';
REVOKE ALL ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION session_janitor.revocation_status(job_id uuid)
RETURNS TABLE (state text, output jsonb, retry_count integer)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
  SELECT j.state::text, j.output, j.retry_count
    FROM {{pgboss_schema}}.job j
   WHERE j.name = 'refresh-session.revoke' AND j.id = revocation_status.job_id
$function$;

COMMENT ON FUNCTION session_janitor.revocation_status(uuid) IS
  'session-janitor: state (created, retry, active, completed, failed, cancelled), output and retry count of a job of refresh-session.revoke; no row once pg-boss has deleted the job.';
REVOKE ALL ON FUNCTION session_janitor.revocation_status(uuid) FROM PUBLIC;
