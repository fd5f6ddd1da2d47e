/**
 * The worker's own schema, `session_janitor`: versioned migrations, applied in order by
 * `session-janitor migrate` (and on start unless JANITOR_MIGRATE=false), each in the same
 * transaction as the bump of the recorded version, under an advisory lock so replicas that start
 * together apply each migration once.
 *
 * FROZEN: each migration is the text of sql/migrations/NNNNNN.sql, and a released one never
 * changes, not even its whitespace: sql/migrations/CHECKSUMS holds their SHA-256, and
 * test/migrations.test.ts fails when a file and its line differ, and when a line that a release holds
 * (CHANGELOG.md's heading or tag, read from git history) changed since. A database already at a
 * version never runs that file again, so an edit would reach fresh databases only. A change is a new
 * file (for a function, CREATE OR REPLACE FUNCTION) with its line in CHECKSUMS; nothing else lists it.
 *
 * The file's header says what the code knows of it: its first line `-- session_janitor migration N:
 * <description>`, and `--! breaking` when a release that does not know it must not run against a
 * schema that has it (db/compatibility.ts; the rule, expand first and contract a release later, is
 * docs/deployment.md's "Writing a migration").
 *
 * pg-boss upgrades (package.json pins pg-boss exactly): migrations 3 and later copy what pg-boss's
 * send does (db/sql/enqueue-revocation.ts says what, for which pg-boss version). When an upgrade
 * changes that, write a new migration with the new function; test/revoke-queue.test.ts's drift test
 * runs on a fresh database and on one migrated with each earlier version, then upgraded.
 *
 * The only text filled in at run time is a placeholder: {{pgboss_schema}} (PGBOSS_SCHEMA, a quoted
 * identifier) and {{pgboss_schema_literal}} (the same, as a string literal).
 */
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import type { Config } from '../../config.ts';
import { quote, type Statement } from './identifiers.ts';

export const OWN_SCHEMA = 'session_janitor';

/** sql/migrations/, from src/db/sql/ and from dist/db/sql/ alike (the image ships /app/sql). */
export const MIGRATIONS_DIR = new URL('../../../sql/migrations/', import.meta.url);

export interface Migration {
  readonly version: number;
  /** From the file's first line: `-- session_janitor migration N: <description>`. */
  readonly description: string;
  /**
   * `--! breaking` in the file's header: a release that does not know this migration must not run
   * against a schema that has it (db/compatibility.ts). The rule: expand first, contract a release
   * later (docs/deployment.md, "Writing a migration").
   */
  readonly breaking: boolean;
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

const FILE_NAME = /^(\d{6})\.sql$/;
const FIRST_LINE = /^-- session_janitor migration (\d+): (\S.*)$/;
/** A directive of the header: a comment line `--! <word>` before the first statement. */
const DIRECTIVE = /^--!\s*(.*?)\s*$/;
const DIRECTIVES = new Set(['breaking']);

/** Every NNNNNN.sql of sql/migrations/, in order: a new migration is a new file (and its CHECKSUMS line). */
export const MIGRATIONS: readonly Migration[] = readdirSync(MIGRATIONS_DIR)
  .filter((file) => FILE_NAME.test(file))
  .sort()
  .map((file) => parseMigration(file, readFileSync(new URL(file, MIGRATIONS_DIR), 'utf8')));

export const LATEST_VERSION = Math.max(...MIGRATIONS.map((m) => m.version));

/**
 * A migration from its file's name and text. The header (the comment lines before the first
 * statement) holds what the code knows of it: the first line gives its number, which must be the
 * file's, and its description; `--! breaking` marks it breaking. An unknown directive is an error
 * (a misspelt `--! braking` must not pass for a non-breaking migration).
 */
export function parseMigration(file: string, text: string): Migration {
  const number = FILE_NAME.exec(file)?.[1];
  if (number === undefined) throw new Error(`${file}: a migration is named NNNNNN.sql`);
  const version = Number(number);
  const lines = text.split('\n');
  const first = FIRST_LINE.exec(lines[0] ?? '');
  if (first === null || Number(first[1]) !== version) {
    throw new Error(`${file}: the first line must be \`-- session_janitor migration ${version}: <what it does>\``);
  }
  let breaking = false;
  for (const line of lines.slice(1)) {
    if (!line.startsWith('--')) break;
    const directive = DIRECTIVE.exec(line)?.[1];
    if (directive === undefined) continue;
    if (!DIRECTIVES.has(directive)) throw new Error(`${file}: unknown header directive \`--! ${directive}\` (known: ${[...DIRECTIVES].join(', ')})`);
    breaking = true;
  }
  return { version, description: first[2] ?? '', breaking, file, text, sql: (config) => fillPlaceholders(file, text, config) };
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

/**
 * Whether the version table has the columns of migration 6 (breaking, release): a database of an
 * earlier version has not, and its rows then say nothing of either.
 */
export const versionTableHasDetails: Statement = {
  name: 'sj_migration_has_details',
  text: `SELECT count(*) = 2 AS present FROM pg_attribute
          WHERE attrelid = to_regclass('${OWN_SCHEMA}.migration') AND attname IN ('breaking', 'release') AND NOT attisdropped`,
};

/** $1 version, $2 breaking, $3 the release (package.json version) whose `migrate` applied it. */
export const recordDetails: Statement = {
  name: 'sj_migration_record_details',
  text: `UPDATE ${quote(OWN_SCHEMA)}.migration SET breaking = $2, release = $3 WHERE version = $1`,
};

/** The newest breaking migration above $1 (the newest this code knows), and the release that applied it. */
export const newerBreaking: Statement = {
  name: 'sj_migration_newer_breaking',
  text: `SELECT version, release FROM ${quote(OWN_SCHEMA)}.migration WHERE breaking AND version > $1 ORDER BY version DESC LIMIT 1`,
};
