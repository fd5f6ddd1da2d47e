-- session_janitor migration 7: the shape of a request bounded at enqueue (no nested values but the id lists: a payload of 5 MB of empty objects took the worker past its heap); dedupe keys of jobs enqueued before migration 4 retired, so that none collides with a scoped key
--
-- revocation_shape_issue is what bounds the cost of reading a request: the worker's heap holds a
-- parsed payload (JSON.parse), and 5 MB of jsonb text made of small values ('{}' a million times)
-- parses into a million objects, more than the pod's heap (--max-old-space-size=160). Every valid
-- RevokeRequest is an object of at most 7 fields, each a scalar, but userIds (numbers) and jtis
-- (strings), arrays of at most 100000: such a payload of at most 5000000 bytes parses into at most
-- about 200000 scalars. The function does not decide validity (uuid syntax, integer range, the
-- selector rule are the worker's, src/revoke-request.ts): it refuses only what no valid request
-- is, and what could be large: nested values, more fields than a request has (16: room for a
-- typo, which the worker then dead-letters with every issue), longer id lists, more bytes.
-- It returns NULL, or the first issue as {"path", "message"}, the shape of the worker's issues.
-- For a payload of more than 64 KiB of text (what parses cheaply whatever it holds), insert_revocation
-- raises it at enqueue (SQLSTATE 22023), and the worker runs it on a job's data (a raw boss.send,
-- an INSERT into the job table) before it reads or parses anything, and dead-letters the job with
-- that issue (src/consumers/revoke.ts). Smaller invalid payloads are dead-lettered by the worker
-- with every issue, as before.
CREATE OR REPLACE FUNCTION session_janitor.revocation_shape_issue(payload jsonb)
RETURNS jsonb
LANGUAGE plpgsql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  field text;
  value jsonb;
  expected text;
  bytes integer;
BEGIN
  IF payload IS NULL OR pg_catalog.jsonb_typeof(payload) <> 'object' THEN
    RETURN pg_catalog.jsonb_build_object('path', '', 'message', 'the request must be a JSON object');
  END IF;
  -- The id lists first: their length is cheap to read, and a longer one is the likeliest mistake.
  FOREACH field IN ARRAY ARRAY['userIds', 'jtis'] LOOP
    IF pg_catalog.jsonb_typeof(payload -> field) = 'array' AND pg_catalog.jsonb_array_length(payload -> field) > 100000 THEN
      RETURN pg_catalog.jsonb_build_object('path', field, 'message',
        pg_catalog.format('%s has %s ids, at most 100000: split the request', field, pg_catalog.jsonb_array_length(payload -> field)));
    END IF;
  END LOOP;
  bytes := pg_catalog.octet_length(payload::text);
  IF bytes > 5000000 THEN
    RETURN pg_catalog.jsonb_build_object('path', '', 'message', pg_catalog.format('the request is %s bytes as jsonb text, at most 5000000', bytes));
  END IF;
  IF (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(payload)) > 16 THEN
    RETURN pg_catalog.jsonb_build_object('path', '', 'message',
      'the request has more than 16 fields; a RevokeRequest has at most 7 (unknown fields are rejected)');
  END IF;
  FOR field, value IN SELECT e.key, e.value FROM pg_catalog.jsonb_each(payload) AS e LOOP
    IF field IN ('userIds', 'jtis') THEN
      expected := CASE field WHEN 'userIds' THEN 'number' ELSE 'string' END;
      IF pg_catalog.jsonb_typeof(value) <> 'array' THEN
        RETURN pg_catalog.jsonb_build_object('path', field, 'message', pg_catalog.format('%s must be an array of 1 to 100000 %s', field,
          CASE field WHEN 'userIds' THEN 'user ids' ELSE 'UUIDs' END));
      END IF;
      IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(value) AS x(element) WHERE pg_catalog.jsonb_typeof(x.element) <> expected) THEN
        RETURN pg_catalog.jsonb_build_object('path', field, 'message', pg_catalog.format('%s must hold only JSON %ss', field, expected));
      END IF;
    ELSIF pg_catalog.jsonb_typeof(value) IN ('object', 'array') THEN
      RETURN pg_catalog.jsonb_build_object('path', field, 'message',
        pg_catalog.format('%s must not be a JSON %s: a RevokeRequest holds no nested value but the arrays userIds and jtis', field, pg_catalog.jsonb_typeof(value)));
    END IF;
  END LOOP;
  RETURN NULL;
END
$function$;

COMMENT ON FUNCTION session_janitor.revocation_shape_issue(jsonb) IS
  'session-janitor: NULL when a revocation payload has the bounded shape of a RevokeRequest (an object of scalars but the arrays userIds and jtis, of scalars, at most 100000 each, at most 5000000 bytes), else its first issue as {"path", "message"}.';
-- Every role may call it: it reads nothing and writes nothing. The worker's role needs it for every
-- revocation (the statement that reads a job's data calls it), and sql/roles.sql's default
-- privileges take PUBLIC's EXECUTE off new functions: granted here, an upgrade needs no new grant.
GRANT EXECUTE ON FUNCTION session_janitor.revocation_shape_issue(jsonb) TO PUBLIC;

-- insert_revocation as in migration 4, plus the check of shape of a large payload.
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
  issue jsonb;
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

  -- Shape (migration 7), for a payload too large to be cheap whatever it holds (64 KiB, as the
  -- worker's MAX_PARSED_JSON_CHARS, src/db/bounded-json.ts): smaller ones, valid or not, go on to
  -- the worker, which dead-letters an invalid one with every issue (docs/CONTRACT.md).
  IF bytes > 65536 THEN
    issue := session_janitor.revocation_shape_issue(payload);
    IF issue IS NOT NULL THEN
      RAISE EXCEPTION '%', issue ->> 'message' USING ERRCODE = 'invalid_parameter_value';
    END IF;
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

-- Before migration 4, a dedupe key was stored as given, by whichever role: a key shaped like a
-- scoped one ('session_janitor_global_revoker/rotate-2026-12', from the per-user producer) squatted
-- that role's key after the upgrade (its real request returned NULL), and revocation_by_key reported
-- the squatter's job as the caller's. A job's key cannot tell which kind it is, but its age can:
-- every job created before migration 4 was applied holds an unscoped key. Those keys are retired:
-- kept for whoever reads the job table, behind a prefix that no scoped key can start with
-- (quote_ident yields a lower-case letter, an underscore or a double quote first), and without
-- their slot (singleton_on, what pg-boss's unique index dedupes on), so they neither block a key nor
-- match revocation_by_key's lookup, which then reports only jobs the calling role enqueued. A key
-- retired already keeps its one prefix (the migration runs again after sql/undo/000007.sql).
UPDATE {{pgboss_schema}}.job
   SET singleton_key = '(unscoped, before migration 4) ' || singleton_key,
       singleton_on = NULL
 WHERE name = 'refresh-session.revoke'
   AND singleton_key IS NOT NULL
   AND singleton_key NOT LIKE '(unscoped, before migration 4) %'
   AND created_on < (SELECT m.applied_at FROM "session_janitor".migration m WHERE m.version = 4);
