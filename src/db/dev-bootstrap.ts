/**
 * Development only (the embedded PostgreSQL): create the auth tables from sql/auth.sql, a copy of
 * the auth service's DDL, and load a small demo data set so that a newcomer sees a purge happen.
 * Against a real DATABASE_URL the worker never creates or alters auth tables.
 */
import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { QualifiedName } from '../config.ts';

const AUTH_DDL = new URL('../../sql/auth.sql', import.meta.url);

/** Why a database without the sessions table is the wrong one, naming it (never its password). */
export function noSessionTable(table: QualifiedName, connectionString: string): string {
  const database = decodeURIComponent(new URL(connectionString).pathname.slice(1));
  return `database ${database} has no ${table.schema}.${table.name}: is DATABASE_URL the auth database? (JANITOR_SESSION_TABLE names the table)`;
}

/** Whether the sessions table exists: the sign that DATABASE_URL names the auth service's database. */
export async function sessionTableExists(pool: pg.Pool, table: QualifiedName = { schema: 'auth', name: 'refresh_session' }): Promise<boolean> {
  const { rows } = await pool.query<{ present: boolean }>({
    name: 'session_table_exists',
    text: "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL AS present",
    values: [table.schema, table.name],
  });
  return rows[0]?.present ?? false;
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
