-- session_janitor migration 4: payloads of at most 100000 ids and 5000000 bytes; no revocation of sessions that do not exist yet; revocations of every user take their own function (enqueue_global_revocation); dedupe keys scoped by the calling role, and revocation_by_key
--
-- insert_revocation is what enqueue_revocation did in migration 3, plus the check of issuedBefore
-- and the scope of the dedupe key; it is called by the functions that producers are granted, and by
-- no one else.
--
-- Dedupe keys are scoped by the calling role: a job's singleton_key is
-- quote_ident(session_user) || '/' || dedupe_key (quote_ident's output holds no '/' unless quoted,
-- so two roles' keys never collide), so one service cannot take another's key (squatting). The Node
-- client scopes its boss.send keys the same way (src/client.ts). session_user, not current_user:
-- inside these SECURITY DEFINER functions current_user is their owner.
CREATE OR REPLACE FUNCTION session_janitor.insert_revocation(payload jsonb, dedupe_key text)
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
  issued_before timestamptz;
  scoped_key text;
  ids text;
  bytes integer;
BEGIN
  -- Size, before anything is stored: one call with 10 M ids (32 MB) once took the worker past its
  -- pod's memory limit before it could refuse the payload. A valid request holds at most 100000 ids
  -- (MAX_IDS, src/revoke-request.ts), under 4.1 MB as PostgreSQL prints jsonb (100000 jtis);
  -- 5000000 bytes of that text (MAX_PAYLOAD_BYTES, db/sql/enqueue-revocation.ts) leaves room for
  -- the longest reason and requestedBy and refuses anything much larger.
  IF pg_catalog.jsonb_typeof(payload) = 'object' THEN
    FOREACH ids IN ARRAY ARRAY['userIds', 'jtis'] LOOP
      IF pg_catalog.jsonb_typeof(payload -> ids) = 'array' AND pg_catalog.jsonb_array_length(payload -> ids) > 100000 THEN
        RAISE EXCEPTION '% has % ids, at most 100000: split the request', ids, pg_catalog.jsonb_array_length(payload -> ids)
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
    END LOOP;
  END IF;
  bytes := pg_catalog.octet_length(payload::text);
  IF bytes > 5000000 THEN
    RAISE EXCEPTION 'the request is % bytes as jsonb text, at most 5000000', bytes USING ERRCODE = 'program_limit_exceeded';
  END IF;

  IF dedupe_key IS NOT NULL AND (dedupe_key = '' OR pg_catalog.length(dedupe_key) > 255) THEN
    RAISE EXCEPTION 'dedupe_key must be 1 to 255 characters, or NULL' USING ERRCODE = 'invalid_parameter_value';
  END IF;

  IF dedupe_key IS NOT NULL THEN
    scoped_key := pg_catalog.quote_ident(session_user::text) || '/' || dedupe_key;
  END IF;

  -- Sessions that do not exist yet cannot be revoked: an issuedBefore later than now() plus 5
  -- minutes of clock skew between the producer and the database is a mistake (9999-12-31 would
  -- revoke every session, including those created after the request). The worker checks the same
  -- at run time (src/revoke-consumer.ts); text that is no instant is left to its validation.
  IF pg_catalog.jsonb_typeof(payload) = 'object' AND pg_catalog.jsonb_typeof(payload -> 'issuedBefore') = 'string' THEN
    BEGIN
      issued_before := (payload ->> 'issuedBefore')::timestamptz;
    EXCEPTION WHEN data_exception THEN
      issued_before := NULL;
    END;
    IF issued_before > enqueued_at + interval '5 minutes' THEN
      RAISE EXCEPTION 'issuedBefore % is later than the database''s now() plus 5 minutes of clock skew: sessions that do not exist yet cannot be revoked',
        payload ->> 'issuedBefore' USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
    USING 'refresh-session.revoke', payload, enqueued_at, scoped_key, 2147483647,
          q.expire_seconds, q.deletion_seconds, q.retention_seconds, q.retry_limit, q.retry_delay,
          q.retry_backoff, q.retry_delay_max, q.policy, q.dead_letter, q.heartbeat_seconds;

  -- As pg-boss's send: one NOTIFY, delivered at commit, only for a job that was inserted.
  IF job_id IS NOT NULL AND q.notify THEN
    PERFORM pg_catalog.pg_notify(('pgboss_' || left(encode(sha224({{pgboss_schema_literal}}::bytea), 'hex'), 24)), 'refresh-session.revoke');
  END IF;
  RETURN job_id;
END
$function$;

COMMENT ON FUNCTION session_janitor.insert_revocation(jsonb, text) IS
  'session-janitor, internal: the insert behind enqueue_revocation and enqueue_global_revocation; grant it to no one.';
REVOKE ALL ON FUNCTION session_janitor.insert_revocation(jsonb, text) FROM PUBLIC;

-- The per-user producer's function: a request without userId that has issuedBefore reaches every
-- user, and needs the grant of enqueue_global_revocation instead.
CREATE OR REPLACE FUNCTION session_janitor.enqueue_revocation(payload jsonb, dedupe_key text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
  IF pg_catalog.jsonb_typeof(payload) = 'object' AND payload ? 'issuedBefore'
     AND pg_catalog.jsonb_typeof(payload -> 'userId') IS DISTINCT FROM 'number' THEN
    RAISE EXCEPTION 'issuedBefore without userId revokes the sessions of every user: call session_janitor.enqueue_global_revocation, which needs its own grant'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN session_janitor.insert_revocation(payload, dedupe_key);
END
$function$;

COMMENT ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) IS
  'session-janitor: enqueue a RevokeRequest (see docs/producers.md) on queue refresh-session.revoke with the queue''s retry, expiry, retention and dead-letter settings; not issuedBefore without userId (enqueue_global_revocation). Returns the job id, or NULL when dedupe_key was already used.';
REVOKE ALL ON FUNCTION session_janitor.enqueue_revocation(jsonb, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION session_janitor.enqueue_global_revocation(payload jsonb, dedupe_key text DEFAULT NULL)
RETURNS uuid
LANGUAGE sql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
  SELECT session_janitor.insert_revocation(payload, dedupe_key)
$function$;

COMMENT ON FUNCTION session_janitor.enqueue_global_revocation(jsonb, text) IS
  'session-janitor: enqueue_revocation for every request, including issuedBefore without userId (the sessions of every user); grant it only to the services that rotate signing keys.';
REVOKE ALL ON FUNCTION session_janitor.enqueue_global_revocation(jsonb, text) FROM PUBLIC;

-- The jobs of a dedupe key of the caller's, newest first: the one that holds the key, and those that
-- let it go (an invalid request, dead-lettered, frees its key: src/revoke-consumer.ts). No row once
-- pg-boss has deleted them (deleteAfterSeconds, 7 days after they end).
CREATE OR REPLACE FUNCTION session_janitor.revocation_by_key(dedupe_key text)
RETURNS TABLE (job_id uuid, state text, output jsonb, retry_count integer, created_on timestamptz)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
  SELECT j.id, j.state::text, j.output, j.retry_count, j.created_on
    FROM {{pgboss_schema}}.job j
   WHERE j.name = 'refresh-session.revoke'
     AND j.singleton_key = pg_catalog.quote_ident(session_user::text) || '/' || revocation_by_key.dedupe_key
   ORDER BY j.created_on DESC, j.id
$function$;

COMMENT ON FUNCTION session_janitor.revocation_by_key(text) IS
  'session-janitor: the jobs of refresh-session.revoke enqueued by the calling role with this dedupe_key, newest first: id, state, output, retry count, created_on.';
REVOKE ALL ON FUNCTION session_janitor.revocation_by_key(text) FROM PUBLIC;
