/**
 * Development only (the embedded PostgreSQL): create the auth tables from sql/auth.sql, a copy of
 * the auth service's DDL, and load a small demo data set so that a newcomer sees a purge happen.
 * Against a real DATABASE_URL the worker never creates or alters auth tables.
 */
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { QualifiedName } from '../config.ts';
import { SESSION_TABLE_PRIVILEGES, type TablePrivilege } from '../queues.ts';

const AUTH_DDL = new URL('../../sql/auth.sql', import.meta.url);

/** Why a database without the sessions table is the wrong one, naming it (never its password). */
export function noSessionTable(table: QualifiedName, connectionString: string): string {
  const database = decodeURIComponent(new URL(connectionString).pathname.slice(1));
  return `database ${database} has no ${table.schema}.${table.name}: is DATABASE_URL the auth database? (JANITOR_SESSION_TABLE names the table)`;
}

/** What the worker's role can do with the sessions table: it must exist, and hold what the tasks need (queues.ts). */
export interface SessionTableAccess {
  readonly present: boolean;
  /** Of the privileges asked for, those the role lacks (all of them when the table is absent). */
  readonly missingPrivileges: readonly TablePrivilege[];
  /** Columns the worker reads that the table lacks: another table than the sessions table. */
  readonly missingColumns: readonly string[];
}

/** The columns of auth.refresh_session the purge, the reaper and revocations read (sql/auth.sql). */
const SESSION_COLUMNS = ['id', 'jti', 'user_id', 'created_at', 'last_used_at', 'expires_at'];

/**
 * Whether the sessions table exists (the sign that DATABASE_URL names the auth service's database)
 * and the role holds what the tasks need on it (SESSION_TABLE_PRIVILEGES: SELECT and DELETE): a
 * role without them would run every purge, reap and revocation into a 42501, forever.
 * has_table_privilege is true for any one of a list, so each is asked on its own.
 */
export async function sessionTableAccess(
  pool: pg.Pool,
  table: QualifiedName = { schema: 'auth', name: 'refresh_session' },
  privileges: readonly TablePrivilege[] = SESSION_TABLE_PRIVILEGES,
): Promise<SessionTableAccess> {
  const { rows } = await pool.query<{ present: boolean; missing_privileges: TablePrivilege[]; missing_columns: string[] }>({
    name: 'session_table_access',
    text: `SELECT t IS NOT NULL AS present,
       ARRAY(SELECT p FROM unnest($4::text[]) AS p WHERE t IS NULL OR NOT has_table_privilege(t, p)) AS missing_privileges,
       ARRAY(SELECT c FROM unnest($3::text[]) AS c
              WHERE t IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = t AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped)) AS missing_columns
  FROM (SELECT to_regclass(format('%I.%I', $1::text, $2::text)) AS t) AS lookup`,
    values: [table.schema, table.name, SESSION_COLUMNS, privileges],
  });
  const row = rows[0];
  return {
    present: row?.present ?? false,
    missingPrivileges: row === undefined ? privileges : privileges.filter((p) => row.missing_privileges.includes(p)),
    missingColumns: SESSION_COLUMNS.filter((c) => row?.missing_columns.includes(c) === true),
  };
}

export async function sessionTableExists(pool: pg.Pool, table?: QualifiedName): Promise<boolean> {
  return (await sessionTableAccess(pool, table)).present;
}

/** Why the worker cannot use the sessions table, or null when it can. */
export function sessionTableProblem(access: SessionTableAccess, table: QualifiedName, connectionString: string): string | null {
  if (!access.present) return noSessionTable(table, connectionString);
  if (access.missingColumns.length > 0) {
    return `${table.schema}.${table.name} has no column ${access.missingColumns.join(', ')}: is JANITOR_SESSION_TABLE the sessions table (auth.refresh_session's shape, sql/auth.sql)?`;
  }
  if (access.missingPrivileges.length === 0) return null;
  const user = decodeURIComponent(new URL(connectionString).username) || 'the connecting role';
  return `${user} lacks ${access.missingPrivileges.join(' and ')} on ${table.schema}.${table.name}: grant them (sql/roles.sql, session_janitor_worker)`;
}

export async function createAuthTables(pool: pg.Pool): Promise<void> {
  await pool.query(await readFile(AUTH_DDL, 'utf8'));
}

export interface DemoData {
  readonly users: number;
  readonly sessions: number;
  readonly expired: number;
}

/**
 * users users with sessionsPerUser sessions each; every third session expired at some point in
 * the past 30 days, the others expire within the next 30 days.
 */
export async function loadDemoData(pool: pg.Pool, users = 500, sessionsPerUser = 8): Promise<DemoData> {
  const { rows } = await pool.query<{ sessions: number; expired: number }>(
    `WITH new_users AS (
       INSERT INTO auth."user" (email)
       SELECT 'demo-' || gen_random_uuid() || '@example.invalid' FROM generate_series(1, $1::int)
       RETURNING id
     ), new_sessions AS (
       INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at, user_agent, ip_address)
       SELECT u.id,
              now() - interval '31 days' + n * interval '1 hour',
              now() - (n % 10) * interval '1 hour',
              CASE WHEN n % 3 = 0 THEN now() - random() * interval '30 days'
                   ELSE now() + random() * interval '30 days' END,
              'demo-agent/1.0',
              '192.0.2.1'::inet
         FROM new_users u, generate_series(1, $2::int) AS n
       RETURNING expires_at
     )
     SELECT count(*)::int AS sessions, count(*) FILTER (WHERE expires_at < now())::int AS expired FROM new_sessions`,
    [users, sessionsPerUser],
  );
  return { users, sessions: rows[0]?.sessions ?? 0, expired: rows[0]?.expired ?? 0 };
}
