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
