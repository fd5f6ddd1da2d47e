/**
 * Whether the worker can purge an extra table of JANITOR_PURGE_TABLES, and how (its primary key):
 * checked at start, by readiness every ping, and at the start of each of its runs, so that a table
 * dropped or a grant revoked later fails that table's run with the same clear line, and never the
 * sessions table's purge or another table's. One line per mistake, naming the entry.
 */
import type pg from 'pg';
import type { Config, PurgeTable } from '../config.ts';
import { purgeTableTask } from '../queues.ts';
import { SQLSTATE, safeErrorMessage, sqlState } from './errors.ts';
import type { PurgeTarget } from './sql/purge-target.ts';
import { purgeTableCatalog, type PurgeTableCatalogRow } from './sql/purge-tables.ts';

/** The grants sql/roles.sql and docs/deployment.md show for one more table: its task's privileges. */
const grantHint = (t: PurgeTable) => `GRANT ${purgeTableTask(t).privileges.join(', ')} ON ${t.label} TO session_janitor_worker (docs/deployment.md)`;

/** Why `row` cannot be purged: one line per mistake; none when it can. Pure, for the tests. */
export function purgeTableProblems(t: PurgeTable, row: PurgeTableCatalogRow | undefined): string[] {
  const line = (why: string) => `JANITOR_PURGE_TABLES entry ${JSON.stringify(t.entry)}: ${why}`;
  if (row === undefined || !row.present) return [line(`table ${t.label} does not exist`)];
  if (row.relkind !== 'r' && row.relkind !== 'p') return [line(`${t.label} is not a table (relkind ${row.relkind ?? 'unknown'})`)];
  const problems: string[] = [];
  if (row.expiry_type === null) problems.push(line(`${t.label} has no column ${t.expiryColumn}`));
  else if (!row.expiry_timestamptz) problems.push(line(`column ${t.label}.${t.expiryColumn} is ${row.expiry_type}, not timestamptz`));
  else if (!row.indexed)
    problems.push(line(`no btree index of ${t.label} has ${t.expiryColumn} as its first column: CREATE INDEX CONCURRENTLY ON ${t.label} (${t.expiryColumn})`));
  if (row.key_columns.length === 0) problems.push(line(`${t.label} has no primary key: the purge needs a single-column one`));
  else if (row.key_columns.length > 1)
    problems.push(line(`${t.label}'s primary key has ${row.key_columns.length} columns (${row.key_columns.join(', ')}): the purge needs a single-column one`));
  if (row.missing_privileges.length > 0) problems.push(line(`${row.role} lacks ${row.missing_privileges.join(' and ')} on ${t.label}: ${grantHint(t)}`));
  return problems;
}

export type PurgeTableCheck =
  { readonly target: PurgeTarget; readonly problems: readonly [] } | { readonly target: null; readonly problems: readonly string[] };

/** Reads the catalog for `t`: its purge target, or its problems. */
export async function checkPurgeTable(client: pg.Pool | pg.ClientBase, t: PurgeTable): Promise<PurgeTableCheck> {
  let row: PurgeTableCatalogRow | undefined;
  try {
    ({
      rows: [row],
    } = await client.query<PurgeTableCatalogRow>({
      ...purgeTableCatalog,
      values: [t.table.schema, t.table.name, t.expiryColumn, purgeTableTask(t).privileges],
    }));
  } catch (error) {
    if (sqlState(error) !== SQLSTATE.insufficientPrivilege) throw error;
    return {
      target: null,
      problems: [
        `JANITOR_PURGE_TABLES entry ${JSON.stringify(t.entry)}: the worker's role may not look up ${t.label} (${safeErrorMessage(error)}): ${grantHint(t)}, and USAGE on its schema`,
      ],
    };
  }
  const problems = purgeTableProblems(t, row);
  const key = row?.key_columns[0];
  if (problems.length > 0 || key === undefined) return { target: null, problems };
  return { target: { table: t.table, expiry: t.expiryColumn, key, keyArray: null }, problems: [] };
}

/** Every extra table's problems, one line each (none: all usable). */
export async function purgeTablesProblems(pool: pg.Pool, config: Pick<Config, 'purgeTables'>): Promise<string[]> {
  const problems: string[] = [];
  for (const table of config.purgeTables) problems.push(...(await checkPurgeTable(pool, table)).problems);
  return problems;
}
