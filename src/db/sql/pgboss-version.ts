/** The version of pg-boss's schema, read as pg-boss's own check reads it (its `version` table). */
import { quote, type Statement } from './identifiers.ts';

/** $1: the version table's quoted name (`"pgboss".version`): whether pg-boss is installed there. */
export const pgbossVersionTableExists: Statement = {
  name: 'sj_pgboss_version_table',
  text: 'SELECT to_regclass($1) IS NOT NULL AS present, current_database() AS database',
};

export function pgbossSchemaVersion(pgbossSchema: string): Statement {
  return {
    name: `sj_pgboss_version_${pgbossSchema}`.slice(0, 63),
    text: `SELECT version FROM ${quote(pgbossSchema)}.version LIMIT 1`,
  };
}

export const pgbossVersionTable = (pgbossSchema: string): string => `${quote(pgbossSchema)}.version`;
