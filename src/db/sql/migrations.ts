/**
 * The worker's own schema, `session_janitor`: versioned migrations, applied in order by
 * `session-janitor migrate` (and on start unless JANITOR_MIGRATE=false), each in the same
 * transaction as the bump of the recorded version, under an advisory lock so replicas that start
 * together apply each migration once.
 *
 * Append only: a released migration never changes, a change is a new migration.
 */
import type { Config } from '../../config.ts';
import { quote, type Statement } from './identifiers.ts';
import { revocationFunctionsSql } from './enqueue-revocation.ts';

export const OWN_SCHEMA = 'session_janitor';

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: (config: Config) => string;
}

/**
 * The advisory lock key (any constant; this one is "sj" in ASCII twice) that serialises migrations
 * between replicas.
 */
export const MIGRATION_LOCK_KEY = 0x736a736a;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'the schema and its version table',
    sql: () => `
      CREATE SCHEMA IF NOT EXISTS ${quote(OWN_SCHEMA)};
      CREATE TABLE IF NOT EXISTS ${quote(OWN_SCHEMA)}.migration (
        version    integer     PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      );`,
  },
  {
    version: 2,
    description: 'the idle reaper position (db/sql/reap-idle.ts)',
    // One row per reaped table: the pass walks (first_id, end_id] of the primary key and every id up
    // to last_id is done. Updated once per range in the statement that deletes the range, so a
    // restart (or a kill -9) resumes exactly there.
    sql: () => `
      CREATE TABLE IF NOT EXISTS ${quote(OWN_SCHEMA)}.reap_position (
        table_name       text        PRIMARY KEY,
        pass             integer     NOT NULL,
        first_id         bigint      NOT NULL,
        last_id          bigint      NOT NULL,
        end_id           bigint      NOT NULL,
        pass_started_at  timestamptz NOT NULL,
        pass_finished_at timestamptz,
        pass_deleted     bigint      NOT NULL DEFAULT 0,
        updated_at       timestamptz NOT NULL DEFAULT now()
      );
      COMMENT ON TABLE ${quote(OWN_SCHEMA)}.reap_position IS
        'session-janitor idle reaper: where the walk of each table''s primary key stands (ids up to last_id are done in this pass)';`,
  },
  {
    version: 3,
    description: 'session_janitor.enqueue_revocation and revocation_status (db/sql/enqueue-revocation.ts)',
    sql: revocationFunctionsSql,
  },
];

export const LATEST_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

export const versionTableExists: Statement = {
  name: 'sj_migration_table',
  text: `SELECT to_regclass('${OWN_SCHEMA}.migration') IS NOT NULL AS present`,
};

export const currentVersion: Statement = {
  name: 'sj_migration_version',
  text: `SELECT coalesce(max(version), 0) AS version FROM ${quote(OWN_SCHEMA)}.migration`,
};

export const recordVersion: Statement = {
  name: 'sj_migration_record',
  text: `INSERT INTO ${quote(OWN_SCHEMA)}.migration (version) VALUES ($1) ON CONFLICT DO NOTHING`,
};
