/**
 * The purge's SQL. One batch is one statement in autocommit, so one short transaction:
 *
 *   1. `bound`: the expires_at of the batch-size-th purgeable row after the cursor, read through the
 *      expires_at index (an index scan that stops after N entries);
 *   2. DELETE every purgeable row from the cursor up to and including that bound, a range scan of the
 *      same index.
 *
 * Deleting the whole range up to the bound (ties included) lets the cursor move to the bound
 * itself, so the next batch starts strictly after it and never re-reads the dead index entries of
 * the batches before it (a LIMIT loop without a cursor slows down by ~75 ms per batch per million
 * dead entries under an old snapshot: ../shared/notes/postgres-deletes.md). It is also the fastest
 * batched shape measured there, with no row locks and no second pass through the primary key.
 *
 * The cutoff is the database's: `now() - grace`, evaluated per statement, so per batch.
 *
 * Parameters of both batch statements: $1 lower bound (timestamptz text), $2 upper bound of the
 * slice ('infinity' for the last one), $3 grace in seconds, $4 batch size.
 */
import type { QualifiedName } from '../../config.ts';
import { qualified, statementName, type Statement } from './identifiers.ts';

const purgeable = (lower: '>=' | '>') =>
  `expires_at ${lower} $1::timestamptz AND expires_at < $2::timestamptz AND expires_at < now() - make_interval(secs => $3::float8)`;

const boundCte = (table: string, lower: '>=' | '>') => `bound AS MATERIALIZED (
    SELECT expires_at FROM ${table}
     WHERE ${purgeable(lower)}
     ORDER BY expires_at
    OFFSET $4::int - 1 LIMIT 1
  )`;

/**
 * The fast batch: a range delete. It waits for a row lock held by a concurrent transaction, at most
 * lock_timeout; the caller then retries the same range with purgeBatchSkipLocked.
 */
export function purgeBatch(table: QualifiedName, lowerInclusive: boolean): Statement {
  const t = qualified(table);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(lowerInclusive ? 'purge_from' : 'purge_after', table),
    text: `WITH ${boundCte(t, lower)},
  gone AS (
    DELETE FROM ${t}
     WHERE ${purgeable(lower)}
       AND expires_at <= coalesce((SELECT expires_at FROM bound), 'infinity')
    RETURNING 1
  )
SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT expires_at::text FROM bound) AS bound`,
  };
}

/**
 * The same range, skipping rows locked by other transactions (a refresh in flight): they stay, and
 * a later run purges them. Rarely used, so the row locks and the primary-key pass cost little.
 * `= ANY(ARRAY(...))` rather than `IN (SELECT ...)`: from ~15k ids the planner turns the IN form
 * into a hash semi join over a sequential scan of the whole table.
 */
export function purgeBatchSkipLocked(table: QualifiedName, lowerInclusive: boolean): Statement {
  const t = qualified(table);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(lowerInclusive ? 'purge_skip_from' : 'purge_skip_after', table),
    text: `WITH ${boundCte(t, lower)},
  victims AS (
    SELECT id FROM ${t}
     WHERE ${purgeable(lower)}
       AND expires_at <= coalesce((SELECT expires_at FROM bound), 'infinity')
       FOR UPDATE SKIP LOCKED
  ),
  gone AS (
    DELETE FROM ${t}
     WHERE id = ANY(ARRAY(SELECT id FROM victims))
    RETURNING 1
  )
SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT expires_at::text FROM bound) AS bound`,
  };
}

/**
 * Boundaries that cut the purgeable expires_at range into $2 slices of equal time, for purging on
 * several connections at once ($1 grace in seconds). No rows: no boundaries.
 */
export function purgeSliceBoundaries(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('purge_slices', table),
    text: `WITH span AS (
    SELECT min(expires_at) AS lo, now() - make_interval(secs => $1::float8) AS hi
      FROM ${t} WHERE expires_at < now() - make_interval(secs => $1::float8)
  )
SELECT (lo + (hi - lo) * g / $2::int)::text AS boundary
  FROM span, generate_series(1, $2::int - 1) AS g
 WHERE lo IS NOT NULL
 ORDER BY g`,
  };
}

/** Purgeable rows ($1 grace in seconds), for --dry-run and the progress ETA. */
export function countPurgeable(table: QualifiedName): Statement {
  return {
    name: statementName('purge_count', table),
    text: `SELECT count(*)::bigint AS n FROM ${qualified(table)} WHERE expires_at < now() - make_interval(secs => $1::float8)`,
  };
}
