/**
 * The one check, at the edge, of the schemas a command is about to use: the worker's own
 * (`session_janitor`) and pg-boss's. install() runs it before pg-boss starts, for the worker and
 * `migrate`; the one-shot commands run it when they open the database (commands/common.ts). A
 * schema that does not fit ends the command with one line that says what to do.
 *
 * Expand/contract: a release runs against the schema of a later release (which only added
 * things), unless the later release applied a migration marked `--! breaking` (db/sql/migrations.ts),
 * recorded in the version table with the release that applied it (migration 6). pg-boss allows no
 * such latitude: its code runs only against its own schema version, so a pg-boss pin that changes
 * that version is a breaking change for the release before it (docs/deployment.md, "pg-boss
 * upgrades").
 */
import type pg from 'pg';
import { commandLine } from '../command-line.ts';
import { buildInfo } from '../build-info.ts';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import { readVersion } from './migrate.ts';
import { LATEST_VERSION, newerBreaking, versionTableHasDetails } from './sql/migrations.ts';
import { pgbossSchemaVersion, pgbossVersionTable, pgbossVersionTableExists } from './sql/pgboss-version.ts';

/** What the database holds. */
export interface SchemaState {
  readonly database: string;
  /** The session_janitor schema's version; 0: not installed. */
  readonly own: number;
  /** The newest breaking migration this code does not know, if any. */
  readonly newerBreaking: { readonly version: number; readonly release: string | null } | null;
  /** pg-boss's schema version; null: not installed. */
  readonly pgboss: number | null;
}

/** What this code needs. */
export interface CodeVersions {
  readonly release: string;
  readonly ownLatest: number;
  readonly pgbossVersion: string;
  readonly pgbossSchema: number;
}

/**
 * Who asks: `migrate` (and a worker with JANITOR_MIGRATE=true) installs what is missing or behind;
 * a worker with JANITOR_MIGRATE=false and a one-shot command need it installed.
 */
export type Edge = 'migrate' | 'worker' | 'command';

export const thisCode = (): CodeVersions => {
  const build = buildInfo();
  return { release: build.version, ownLatest: LATEST_VERSION, pgbossVersion: build.pgbossVersion, pgbossSchema: build.pgbossSchemaVersion };
};

/** Why this code must not run against the database (one line), or null. Pure. */
export function schemaProblem(state: SchemaState, code: CodeVersions, edge: Edge, pgbossSchemaName: string): string | null {
  if (state.newerBreaking !== null) {
    const { version, release } = state.newerBreaking;
    const by = release === null ? 'a later release' : `release ${release}`;
    return (
      `the session_janitor schema has migration ${version}, marked breaking, applied by ${by}: release ${code.release} knows migrations up to ` +
      `${code.ownLatest} and must not run against it; run ${by} or later (a breaking migration is not rolled back: docs/deployment.md, "Rolling back")`
    );
  }
  if (state.pgboss !== null && state.pgboss > code.pgbossSchema) {
    return (
      `the pg-boss schema ${pgbossSchemaName} is at version ${state.pgboss}, newer than pg-boss ${code.pgbossVersion} of release ${code.release} knows ` +
      `(${code.pgbossSchema}): a later release upgraded pg-boss, and pg-boss runs only against its own schema version; run that release or later ` +
      `(docs/deployment.md, "pg-boss upgrades")`
    );
  }
  if (edge === 'migrate') return null;
  const fix = `run \`${commandLine('migrate')}\`${edge === 'worker' ? ' (JANITOR_MIGRATE=false forbids the worker to do it)' : ''}`;
  if (state.pgboss === null) return `pg-boss is not installed in schema ${pgbossSchemaName} of ${state.database}: ${fix}`;
  if (state.pgboss < code.pgbossSchema) {
    return `the pg-boss schema ${pgbossSchemaName} is at version ${state.pgboss}, pg-boss ${code.pgbossVersion} of release ${code.release} needs ${code.pgbossSchema}: ${fix}`;
  }
  if (state.own < code.ownLatest) {
    return `the session_janitor schema is at version ${state.own}, release ${code.release} needs ${code.ownLatest}: ${fix}`;
  }
  return null;
}

export async function readSchemaState(db: pg.Pool | pg.PoolClient, config: Config, ownLatest: number = LATEST_VERSION): Promise<SchemaState> {
  const own = await readVersion(db);
  let breaking: SchemaState['newerBreaking'] = null;
  if (own > ownLatest && (await db.query<{ present: boolean }>(versionTableHasDetails)).rows[0]?.present) {
    const row = (await db.query<{ version: number; release: string | null }>({ ...newerBreaking, values: [ownLatest] })).rows[0];
    if (row !== undefined) breaking = { version: row.version, release: row.release };
  }
  const table = (await db.query<{ present: boolean; database: string }>({ ...pgbossVersionTableExists, values: [pgbossVersionTable(config.pgbossSchema)] }))
    .rows[0];
  let pgboss: number | null = null;
  if (table?.present) {
    const version = (await db.query<{ version: number | string }>(pgbossSchemaVersion(config.pgbossSchema))).rows[0]?.version;
    pgboss = version === undefined ? null : Number(version);
  }
  return { database: table?.database ?? '', own, newerBreaking: breaking, pgboss };
}

/**
 * Throws the one-line problem, if any. A schema newer than this release's but without a breaking
 * migration is what a rollout (or a rollback) runs against for a while: said once in the log.
 */
export async function assertSchemasCompatible(db: pg.Pool, config: Config, log: Logger, edge: Edge, code: CodeVersions = thisCode()): Promise<void> {
  const state = await readSchemaState(db, config, code.ownLatest);
  const problem = schemaProblem(state, code, edge, config.pgbossSchema);
  if (problem !== null) throw new Error(problem);
  if (state.own > code.ownLatest) {
    log.info(
      { schemaVersion: state.own, knownVersion: code.ownLatest, release: code.release },
      `the session_janitor schema is at version ${state.own}, newer than release ${code.release} knows (${code.ownLatest}); none of the newer migrations is breaking: running against it`,
    );
  }
}
