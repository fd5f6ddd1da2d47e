/**
 * The blast-radius guard's statements (src/tasks/blast-guard.ts; session_janitor.blast_guard,
 * migration 8). Instants leave and come back as Unix seconds (float8).
 */
import type { QualifiedName } from '../../config.ts';
import { qualified, quote, statementName, type Statement } from './identifiers.ts';
import { OWN_SCHEMA } from './migrations.ts';

const GUARD_TABLE = `${quote(OWN_SCHEMA)}.blast_guard`;

export interface GuardRow {
  readonly task: string;
  readonly now: number;
  readonly drained_at: number | null;
  readonly tripped_at: number | null;
  readonly tripped_fraction: number | null;
  readonly tripped_settings: string | null;
  readonly confirmed_by: string | null;
  readonly confirmed_reason: string | null;
  readonly confirmed_at: number | null;
}

const COLUMNS = `task, extract(epoch FROM now())::float8 AS now, extract(epoch FROM drained_at)::float8 AS drained_at,
       extract(epoch FROM tripped_at)::float8 AS tripped_at, tripped_fraction, tripped_settings,
       confirmed_by, confirmed_reason, extract(epoch FROM confirmed_at)::float8 AS confirmed_at`;

/** $1 task: its row (none before its first drained run), with the database's now(). */
export const readGuard: Statement = {
  name: 'sj_guard_read',
  text: `SELECT ${COLUMNS} FROM (SELECT $1::text AS t) AS want LEFT JOIN ${GUARD_TABLE} g ON g.task = want.t`,
};

/** Every task's row. */
export const readGuards: Statement = { name: 'sj_guard_read_all', text: `SELECT ${COLUMNS} FROM ${GUARD_TABLE} ORDER BY task` };

/** $1 task, $2 drained_at (Unix seconds): a run drained; a stop it had (confirmed) is over. */
export const recordDrained: Statement = {
  name: 'sj_guard_drained',
  text: `INSERT INTO ${GUARD_TABLE} AS g (task, drained_at) VALUES ($1::text, to_timestamp($2::float8))
ON CONFLICT (task) DO UPDATE SET drained_at = EXCLUDED.drained_at, tripped_at = NULL, tripped_fraction = NULL, tripped_settings = NULL`,
};

/** $1 task, $2 fraction, $3 settings: the guard stopped a run. */
export const recordTrip: Statement = {
  name: 'sj_guard_trip',
  text: `UPDATE ${GUARD_TABLE} SET tripped_at = now(), tripped_fraction = $2::float8, tripped_settings = $3::text WHERE task = $1::text`,
};

/** $1 task, $2 reason: the operator lets the stopped run go on; none when nothing is stopped. */
export const confirmTrip: Statement = {
  name: 'sj_guard_confirm',
  text: `UPDATE ${GUARD_TABLE} SET confirmed_by = current_user, confirmed_reason = $2::text, confirmed_at = now()
 WHERE task = $1::text AND tripped_at IS NOT NULL AND (confirmed_at IS NULL OR confirmed_at < tripped_at)
 RETURNING ${COLUMNS}`,
};

/** $1 the table, schema-qualified and quoted (a regclass literal): its row estimate (pg_class.reltuples; 0 when never analyzed). */
export const tableRowEstimate: Statement = {
  name: 'sj_guard_reltuples',
  text: `SELECT greatest(c.reltuples, 0)::float8 AS rows FROM pg_catalog.pg_class c WHERE c.oid = to_regclass($1::text)`,
};

/**
 * Of a sample of the table ($3: percent of its pages, TABLESAMPLE SYSTEM), the rows and those the
 * task would delete now that it should already have deleted in the run that drained at $1 (Unix
 * seconds) under the settings of now ($2: the grace, or with `reap` the idle timeout, in seconds).
 */
export function retroactiveSample(table: QualifiedName, reap = false): Statement {
  const column = reap ? 'last_used_at' : 'expires_at';
  return {
    name: statementName(reap ? 'guard_sample_reap' : 'guard_sample_purge', table),
    text: `SELECT count(*)::float8 AS sampled,
       count(*) FILTER (WHERE ${column} < to_timestamp($1::float8) - make_interval(secs => $2::float8))::float8 AS retroactive
  FROM ${qualified(table)} TABLESAMPLE SYSTEM ($3::float8)`,
  };
}
