-- The database roles of session-janitor, least privilege (docs/deployment.md, "Database roles").
--
--   session_janitor_migrator  runs `session-janitor migrate` (the Kubernetes migrate Job): owns the
--                             schemas pgboss and session_janitor and everything in them.
--   session_janitor_worker    runs the workers (`session-janitor start`, JANITOR_MIGRATE=false):
--                             DML on pg-boss's tables and session_janitor's tables; on auth, only
--                             SELECT and DELETE on auth.refresh_session, nothing else (see below).
--                             It is the role that may `session-janitor pause` and `resume` (they
--                             write session_janitor.pause); the producer roles may not.
--   session_janitor_producer  for other services that enqueue revocations in SQL: EXECUTE on
--                             session_janitor.enqueue_revocation, revocation_status and
--                             revocation_by_key only (SECURITY DEFINER, owned by the migrator), no
--                             right on pgboss.
--                             enqueue_revocation refuses issuedBefore without userId: that request
--                             reaches every user, and takes the next role.
--   session_janitor_global_revoker
--                             for the few services that revoke every user's sessions (a signing key
--                             rotated): EXECUTE on session_janitor.enqueue_global_revocation,
--                             revocation_status and revocation_by_key only. Grant it apart from the producer role, to as few
--                             services as possible. Both roles can only enqueue through the functions,
--                             which refuse an issuedBefore later than now() + 5 minutes. A service with
--                             write access to pgboss.job (the worker, the migrator, or a producer's own
--                             pg-boss with those rights) bypasses the functions and can enqueue any
--                             request, so neither role has any right on schema pgboss.
--
-- Run it as a superuser, or as a role with CREATEROLE that owns schema auth (or may grant on it) and
-- is a member of session_janitor_migrator, in the application's database:
--
--   psql "$ADMIN_DATABASE_URL" -1 -v ON_ERROR_STOP=1 -f sql/roles.sql
--
-- It is idempotent: run it again after the first `session-janitor migrate` and after every one that
-- adds a producer function (it grants the producer EXECUTE on the functions that exist, and revokes
-- PUBLIC's EXECUTE on them); tables, sequences and pg-boss functions the migrator creates later reach
-- the worker through default privileges, without a re-run. It sets no password:
-- the roles can log in only once the operator sets one, e.g. in psql `\password session_janitor_worker`.
-- Plain SQL (no psql meta-command), so any client can run it in one simple query.
--
-- It names the pg-boss schema `pgboss` (PGBOSS_SCHEMA's default) and the table auth.refresh_session
-- (JANITOR_SESSION_TABLE's default): replace them throughout if those variables differ.

-- Roles ------------------------------------------------------------------------------------------

DO $roles$
DECLARE
  role_name text;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['session_janitor_migrator', 'session_janitor_worker', 'session_janitor_producer', 'session_janitor_global_revoker'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', role_name);
    END IF;
  END LOOP;
END
$roles$;

-- The database -----------------------------------------------------------------------------------

DO $database$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO session_janitor_migrator, session_janitor_worker, session_janitor_producer, session_janitor_global_revoker', current_database());
  -- CREATE SCHEMA checks this right even for a schema that exists (IF NOT EXISTS).
  EXECUTE format('GRANT CREATE ON DATABASE %I TO session_janitor_migrator', current_database());
END
$database$;

-- The schemas the migrator owns: created here, so the grants below can name them before the first
-- migration (`migrate` then finds them and installs into them).
CREATE SCHEMA IF NOT EXISTS pgboss AUTHORIZATION session_janitor_migrator;
CREATE SCHEMA IF NOT EXISTS session_janitor AUTHORIZATION session_janitor_migrator;

-- Functions are executable by PUBLIC by default; not those the migrator creates from now on (the
-- SECURITY DEFINER enqueue_revocation above all). This default is global: PostgreSQL cannot revoke
-- PUBLIC's EXECUTE per schema.
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The worker: pg-boss -----------------------------------------------------------------------------

GRANT USAGE ON SCHEMA pgboss TO session_janitor_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgboss TO session_janitor_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA pgboss TO session_janitor_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgboss TO session_janitor_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator IN SCHEMA pgboss
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO session_janitor_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator IN SCHEMA pgboss
  GRANT USAGE, SELECT ON SEQUENCES TO session_janitor_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator IN SCHEMA pgboss
  GRANT EXECUTE ON FUNCTIONS TO session_janitor_worker;

-- The worker: session_janitor (the idle reaper's position, and whatever state the worker keeps) ---

GRANT USAGE ON SCHEMA session_janitor TO session_janitor_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA session_janitor TO session_janitor_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA session_janitor TO session_janitor_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator IN SCHEMA session_janitor
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO session_janitor_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE session_janitor_migrator IN SCHEMA session_janitor
  GRANT USAGE, SELECT ON SEQUENCES TO session_janitor_worker;

-- The worker: auth, the sessions table and nothing else -------------------------------------------

-- SELECT and DELETE only. The worker's statements take no row locks of their own (FOR UPDATE, even
-- FOR SHARE, would need UPDATE on a column): deletes lock the rows they delete, and the purge's and
-- the reaper's retry after a lock timeout tell a held row from its xmax (src/db/sql/held-rows.ts).
-- test/deploy/roles.test.ts runs the worker under this role and tries every write it must not do.
-- REVOKE ALL on a table also revokes column grants an earlier version of this script made.
GRANT USAGE ON SCHEMA auth TO session_janitor_worker;
REVOKE ALL ON ALL TABLES IN SCHEMA auth FROM session_janitor_worker;
GRANT SELECT, DELETE ON TABLE auth.refresh_session TO session_janitor_worker;
-- Each table of JANITOR_PURGE_TABLES needs the same two rights, nothing more (docs/deployment.md,
-- "More expiring tables"). Add its line here, uncommented, rather than granting it elsewhere: the
-- REVOKE above takes back, at every run of this script, any right on auth that it does not grant.
-- GRANT SELECT, DELETE ON TABLE auth.one_time_token TO session_janitor_worker;
-- (a table in another schema also needs: GRANT USAGE ON SCHEMA <schema> TO session_janitor_worker;)

-- The migrator may look names up in auth (say, to check that the sessions table exists) but has no
-- right on any of its tables.
GRANT USAGE ON SCHEMA auth TO session_janitor_migrator;
REVOKE ALL ON ALL TABLES IN SCHEMA auth FROM session_janitor_migrator;

-- The producers: enqueue_revocation (or enqueue_global_revocation) and revocation_status only -----

GRANT USAGE ON SCHEMA session_janitor TO session_janitor_producer, session_janitor_global_revoker;
REVOKE ALL ON SCHEMA pgboss FROM session_janitor_producer, session_janitor_global_revoker;
REVOKE ALL ON ALL TABLES IN SCHEMA session_janitor FROM session_janitor_producer, session_janitor_global_revoker;

-- The functions exist once `migrate` has run: grant on every overload of those named (the
-- contract's signatures are enqueue_revocation(jsonb, text), enqueue_global_revocation(jsonb, text),
-- revocation_status(uuid) and revocation_by_key(text)), and take PUBLIC's EXECUTE off one created before the defaults above.
-- Named one by one, not by a default privilege on the schema, so a function added to
-- session_janitor later (insert_revocation, which only the functions call) is no producer's until it
-- is listed here. Before the first migration this does nothing: run the script again after it.
DO $producer$
DECLARE
  grantee text;
  fn regprocedure;
BEGIN
  FOR grantee, fn IN
    SELECT g.grantee, p.oid::regprocedure
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    JOIN (VALUES ('session_janitor_producer', 'enqueue_revocation'),
                 ('session_janitor_producer', 'revocation_status'),
                 ('session_janitor_producer', 'revocation_by_key'),
                 ('session_janitor_global_revoker', 'enqueue_global_revocation'),
                 ('session_janitor_global_revoker', 'revocation_status'),
                 ('session_janitor_global_revoker', 'revocation_by_key')) AS g (grantee, proname)
      ON g.proname = p.proname
    WHERE n.nspname = 'session_janitor'
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, grantee);
  END LOOP;
END
$producer$;
