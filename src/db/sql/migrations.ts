/**
 * The worker's own schema, `session_janitor`: versioned migrations, applied in order by
 * `session-janitor migrate` (and on start unless JANITOR_MIGRATE=false), each in the same
 * transaction as the bump of the recorded version, under an advisory lock so replicas that start
 * together apply each migration once.
 *
 * FROZEN: each migration is the text of sql/migrations/NNNNNN.sql, and a released one (on main)
 * never changes, not even its whitespace: sql/migrations/CHECKSUMS holds their SHA-256, and
 * test/migrations.test.ts fails when a file and its line differ. A database already at a version
 * never runs that file again, so an edit would reach fresh databases only. A change is a new file
 * (for a function, CREATE OR REPLACE FUNCTION), listed below and in CHECKSUMS.
 *
 * pg-boss upgrades (package.json pins pg-boss exactly): migrations 3 and later copy what pg-boss's
 * send does (db/sql/enqueue-revocation.ts says what, for which pg-boss version). When an upgrade
 * changes that, write a new migration with the new function; test/revoke-queue.test.ts's drift test
 * runs on a fresh database and on one migrated with each earlier version, then upgraded.
 *
 * The only text filled in at run time is a placeholder: {{pgboss_schema}} (PGBOSS_SCHEMA, a quoted
 * identifier) and {{pgboss_schema_literal}} (the same, as a string literal).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import type { Config } from '../../config.ts';
import { quote, type Statement } from './identifiers.ts';

export const OWN_SCHEMA = 'session_janitor';

/** sql/migrations/, from src/db/sql/ and from dist/db/sql/ alike (the image ships /app/sql). */
export const MIGRATIONS_DIR = new URL('../../../sql/migrations/', import.meta.url);

export interface Migration {
  readonly version: number;
  readonly description: string;
  /** NNNNNN.sql in sql/migrations/. */
  readonly file: string;
  /** The frozen text, as committed (placeholders unfilled). */
  readonly text: string;
  /** The text with its placeholders filled in. */
  readonly sql: (config: Config) => string;
}

/**
 * The advisory lock key (any constant; this one is "sj" in ASCII twice) that serialises migrations
 * between replicas.
 */
export const MIGRATION_LOCK_KEY = 0x736a736a;

export const MIGRATIONS: readonly Migration[] = [
  migration(1, 'the schema and its version table'),
  migration(2, 'the idle reaper position (db/sql/reap-idle.ts)'),
  migration(3, 'session_janitor.enqueue_revocation and revocation_status (db/sql/enqueue-revocation.ts)'),
  migration(
    4,
    'at most 100000 ids and 5000000 bytes; issuedBefore no later than now() + 5 minutes; enqueue_global_revocation for issuedBefore without userId; dedupe keys scoped by role, revocation_by_key',
  ),
  migration(5, 'the latency guard probe row (db/sql/latency-guard.ts)'),
  migration(
    6,
    'the shape of a revocation bounded at enqueue and before the worker parses it (revocation_shape_issue); dedupe keys from before migration 4 retired',
  ),
];

export const LATEST_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

function migration(version: number, description: string): Migration {
  const file = `${String(version).padStart(6, '0')}.sql`;
  const text = readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8');
  return { version, description, file, text, sql: (config) => fillPlaceholders(file, text, config) };
}

/** Only the placeholders are filled in; any other `{{...}}` is an error, not SQL. */
function fillPlaceholders(file: string, text: string, config: Config): string {
  const values: Record<string, string> = {
    pgboss_schema: quote(config.pgbossSchema),
    pgboss_schema_literal: pg.escapeLiteral(config.pgbossSchema),
  };
  return text.replace(/\{\{(\w+)\}\}/g, (placeholder, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${file}: unknown placeholder ${placeholder}`);
    return value;
  });
}

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
