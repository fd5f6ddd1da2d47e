/**
 * The idle reaper's SQL. last_used_at has no index (one would cost the auth service its HOT
 * refresh updates: every refresh writes last_used_at, so none could be HOT), so "which rows are idle"
 * cannot be asked through an index, and `DELETE ... WHERE last_used_at < cutoff LIMIT n` would
 * rescan the table from block 0 for every batch. Instead one pass walks the primary key in ranges,
 * `id > $from AND id <= $to`, and deletes the idle rows of each range: every row is read once per
 * pass, in index order, and each range is one short statement in autocommit.
 *
 * The walk's position lives in session_janitor.reap_position (migration 2), one row per table, and
 * moves in the same statement as the delete of its range (a data-modifying CTE), so the two commit
 * or roll back together: a kill -9 loses no range and never skips one.
 *
 * The shape of a range statement (no RETURNING: docs/performance.md):
 *
 *   WITH moved AS (UPDATE reap_position ... WHERE <still where this walker read it> RETURNING 1)
 *   DELETE FROM t WHERE <range> AND <idle> AND EXISTS (SELECT 1 FROM moved)
 *
 * The CTE runs once, to completion, before the delete reads its output; the EXISTS is a one-time
 * filter (an InitPlan): when another walker moved the position, the delete reads nothing. The
 * statement's command tag (rowCount) is the delete's. `DELETE ... RETURNING 1` to count the rows
 * in the statement (the shape before) fetched every deleted row a second time from the heap, which
 * cost the purge 30-35%; so the rows of a range are added to pass_deleted by the next range's
 * statement ($6), and the last range's by addPassDeleted at the end of the run: pass_deleted, a
 * statistic for status and the command, lags one range behind while a run is in flight, and a crash
 * or a failed run can lose one range's count from it. The position itself is exact.
 *
 * A rowCount of 0 means either "no idle row in the range" or "another walker moved the position":
 * the caller tells the two apart by reading the position again (one primary-key probe of a one-row
 * table, and only for empty ranges).
 *
 * The cutoff is the database's, `now() - make_interval(secs => idle seconds)`, evaluated per
 * statement (now() is the statement's transaction start), so once per batch.
 *
 * Concurrent refreshes (`UPDATE ... SET last_used_at = now()`), under READ COMMITTED:
 *   - the range delete only ever locks rows that are idle in its snapshot. If such a row is locked
 *     by a refresh in flight, the delete waits (at most lock_timeout); when the refresh commits,
 *     PostgreSQL re-reads the new row version and re-evaluates the WHERE clause on it (EvalPlanQual):
 *     last_used_at is now fresh, so the row is skipped. The refresh wins, by construction.
 *   - when lock_timeout fires instead (a transaction holds the row for long), the caller retries the
 *     range with reapRangeExceptHeld, then by ids (tasks/held-rows.ts): held rows stay, the next
 *     pass looks at them again.
 * Waiting first, skipping only after a timeout, is the purge's pattern too: the fast statement takes
 * no row locks of its own and makes no second pass through the primary key, and it only waits in the
 * actual race (a row idle for the whole timeout refreshed at the very moment its range is reaped).
 *
 * When a DBA created an index whose first column is last_used_at, the reaper uses it instead
 * (reapThroughIndex): the idle rows are then a range of that index.
 */
import type { QualifiedName } from '../../config.ts';
import { NOT_HELD } from './held-rows.ts';
import { qualified, quote, statementName, type Statement } from './identifiers.ts';
import { OWN_SCHEMA } from './migrations.ts';
import { instantText } from './timestamps.ts';

/** The position table (created by migration 2 in db/sql/migrations.ts). */
export const REAP_POSITION_TABLE = `${quote(OWN_SCHEMA)}.reap_position`;

/** The key of a table's row in reap_position: `schema.table`. */
export const positionKey = (table: QualifiedName): string => `${table.schema}.${table.name}`;

const IDLE = (seconds: string) => `last_used_at < now() - make_interval(secs => ${seconds}::float8)`;

const POSITION_COLUMNS = `pass, first_id::text, last_id::text, end_id::text, ${instantText('pass_started_at')} AS pass_started_at,
       ${instantText('pass_finished_at')} AS pass_finished_at, pass_deleted::text`;

/**
 * Starts a pass when the table has no position yet or its last pass is finished; leaves a pass in
 * progress alone (then returns no row). $1 position key.
 *
 * A pass covers (min(id) - 1, max(id)] as they are now: both ends are read from the primary key
 * (two index probes). Sessions created later are fresh by definition and belong to the next pass.
 * Starting from min(id) rather than 0 spares a walk over the millions of ids the purge has emptied.
 */
export function startPass(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('reap_start_pass', table),
    text: `WITH bounds AS MATERIALIZED (
    SELECT coalesce((SELECT min(id) FROM ${t}), 1)::bigint - 1 AS first_id,
           coalesce((SELECT max(id) FROM ${t}), 0)::bigint AS end_id
  )
INSERT INTO ${REAP_POSITION_TABLE} AS p
       (table_name, pass, first_id, last_id, end_id, pass_started_at, pass_finished_at, pass_deleted, updated_at)
SELECT $1::text, 1, first_id, first_id, end_id, now(), CASE WHEN first_id >= end_id THEN now() END, 0, now()
  FROM bounds
    ON CONFLICT (table_name) DO UPDATE
   SET pass = p.pass + 1, first_id = excluded.first_id, last_id = excluded.last_id, end_id = excluded.end_id,
       pass_started_at = now(), pass_finished_at = excluded.pass_finished_at, pass_deleted = 0, updated_at = now()
 WHERE p.last_id >= p.end_id
RETURNING ${POSITION_COLUMNS}`,
  };
}

/** The table's position ($1 position key), or no row. */
export function readPosition(table: QualifiedName): Statement {
  return {
    name: statementName('reap_read_position', table),
    text: `SELECT ${POSITION_COLUMNS} FROM ${REAP_POSITION_TABLE} WHERE table_name = $1::text`,
  };
}

/**
 * Moves the position past the range, in the statement that deletes it, and only if it still is
 * where this walker read it ($2 pass, $3 from): a second walker (an operator's `reap-idle` while the
 * worker runs) makes the update match nothing, the delete then reads nothing, and the caller
 * re-reads the position rather than overwrite it. `uncounted` ($6 in the range statements) is the
 * rows of this walker's previous range, not yet in pass_deleted.
 */
const movePosition = (uncounted: string) => `WITH moved AS (
    UPDATE ${REAP_POSITION_TABLE} AS p
       SET last_id = $4::bigint,
           pass_deleted = p.pass_deleted + ${uncounted}::bigint,
           pass_finished_at = CASE WHEN $4::bigint >= p.end_id THEN now() END,
           updated_at = now()
     WHERE p.table_name = $1::text AND p.pass = $2::int AND p.last_id = $3::bigint
    RETURNING 1
  )`;

const inRange = `id > $3::bigint AND id <= $4::bigint`;

/**
 * The fast range delete: an index range scan of the primary key, the idle condition as a filter.
 * Parameters of both range statements: $1 position key, $2 pass, $3 from (exclusive), $4 to
 * (inclusive), $5 idle timeout in seconds, $6 rows deleted by the previous range (bigint). The row
 * count is the command tag's; no result rows.
 *
 * Waits for a row lock held by a concurrent transaction, at most lock_timeout (see the top of this
 * file); the caller then retries the range with reapRangeExceptHeld.
 */
export function reapRange(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('reap_range', table),
    text: `${movePosition('$6')}
DELETE FROM ${t}
 WHERE ${inRange} AND ${IDLE('$5')} AND EXISTS (SELECT 1 FROM moved)`,
  };
}

/**
 * The same range, leaving out the rows another transaction holds (see held-rows.ts): they stay,
 * and the next pass looks at them again. The caller runs it after the plain range delete hit
 * lock_timeout (which rolled back its position update too).
 */
export function reapRangeExceptHeld(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('reap_range_except_held', table),
    text: `${movePosition('$6')}
DELETE FROM ${t}
 WHERE ${inRange} AND ${IDLE('$5')} AND ${NOT_HELD} AND EXISTS (SELECT 1 FROM moved)`,
  };
}

/**
 * When reapRangeExceptHeld timed out too, the range is done in several statements
 * (tasks/held-rows.ts): its idle ids, read without locks ($1 from, $2 to, $3 idle timeout in
 * seconds); reapIds on them; then reapMovePosition alone. The position moves last, so a crash in
 * between leaves it before the range, which the next run does again (its deleted rows are simply
 * gone): the position still never passes a range whose rows were not dealt with.
 */
export function reapRangeCandidates(table: QualifiedName): Statement {
  return {
    name: statementName('reap_range_candidates', table),
    text: `SELECT id FROM ${qualified(table)} WHERE id > $1::bigint AND id <= $2::bigint AND ${IDLE('$3')} ORDER BY id`,
  };
}

/** The rows among the ids $1 (bigint[]) still idle (re-checked: read before), $2 idle timeout in seconds. */
export function reapIds(table: QualifiedName): Statement {
  return { name: statementName('reap_ids', table), text: `DELETE FROM ${qualified(table)} WHERE id = ANY($1::bigint[]) AND ${IDLE('$2')}` };
}

/**
 * The move of reapRange alone ($1-$4 as there, $5 its $6). When another walker moved the position
 * meanwhile it matches nothing, and this walker's next range finds out as after reapRange: its
 * statement deletes nothing, and the position is read again.
 */
export function reapMovePosition(table: QualifiedName): Statement {
  return { name: statementName('reap_move', table), text: `${movePosition('$5')}\nSELECT FROM moved` };
}

/**
 * Adds $3 rows to pass_deleted of pass $2 ($1 position key): the last range's rows, at the end of
 * a run (or when another walker moved the position). No row when the pass has changed since.
 */
export function addPassDeleted(table: QualifiedName): Statement {
  return {
    name: statementName('reap_add_deleted', table),
    text: `UPDATE ${REAP_POSITION_TABLE} SET pass_deleted = pass_deleted + $3::bigint WHERE table_name = $1::text AND pass = $2::int`,
  };
}

/**
 * With an index on last_used_at: the oldest $2 idle rows at or after the cursor $3 (a timestamptz,
 * '-infinity' at first), read in index order, then deleted through the primary key with the
 * condition re-checked: a refresh in flight is waited for (at most lock_timeout) and, once it
 * commits, its row no longer matches. $4 true leaves out the rows another transaction holds
 * (held-rows.ts): the retry after a lock timeout; reapIndexCandidates, then reapIds, the fallback
 * after a second one. $1 idle timeout in seconds.
 *
 * Returns deleted and cursor, the newest last_used_at deleted (as instantText: timestamps.ts; a
 * '-infinity' last_used_at is idle and sorts first): the next batch starts there (`>=`,
 * so rows tied with it are looked at again), and never re-reads the dead index entries of the
 * batches before it, which a loop without a cursor does under an old snapshot.
 */
export function reapThroughIndex(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('reap_index', table),
    text: `WITH victims AS (
    SELECT id FROM ${t}
     WHERE last_used_at >= $3::timestamptz AND ${IDLE('$1')} AND (NOT $4::boolean OR ${NOT_HELD})
     ORDER BY last_used_at
     LIMIT $2::int
  ),
  gone AS (
    DELETE FROM ${t}
     WHERE id = ANY(ARRAY(SELECT id FROM victims)) AND ${IDLE('$1')}
    RETURNING last_used_at
  )
SELECT count(*)::int AS deleted, ${instantText('max(last_used_at)')} AS cursor FROM gone`,
  };
}

/** The ids reapThroughIndex would take ($1 to $3 as there), held or not, read without locks, with their last_used_at. */
export function reapIndexCandidates(table: QualifiedName): Statement {
  return {
    name: statementName('reap_index_candidates', table),
    text: `SELECT id, ${instantText('last_used_at')} AS cursor FROM ${qualified(table)}
 WHERE last_used_at >= $3::timestamptz AND ${IDLE('$1')}
 ORDER BY last_used_at
 LIMIT $2::int`,
  };
}

/**
 * A valid btree index of the table ($1 schema, $2 table) whose first column is last_used_at, or no
 * row. Partial indexes do not count: the planner can use one only when it can prove the query's
 * condition implies the index predicate, which it cannot for a cutoff computed from now(). Indexes
 * still being built (CREATE INDEX CONCURRENTLY) or left invalid by a failed build do not count either.
 */
export const findIdleIndex: Statement = {
  name: 'sj_reap_find_index',
  text: `SELECT ic.relname AS index_name
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = tc.relnamespace
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_am am ON am.oid = ic.relam
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
 WHERE n.nspname = $1::text AND tc.relname = $2::text
   AND a.attname = 'last_used_at'
   AND am.amname = 'btree'
   AND i.indisvalid AND i.indisready AND i.indislive
   AND i.indpred IS NULL
 ORDER BY i.indnatts, ic.relname
 LIMIT 1`,
};

/** Idle rows now ($1 idle timeout in seconds): a full scan without the index, for --dry-run. */
export function countIdle(table: QualifiedName): Statement {
  return {
    name: statementName('reap_count', table),
    text: `SELECT count(*)::bigint AS n FROM ${qualified(table)} WHERE ${IDLE('$1')}`,
  };
}
