/**
 * The revocation's SQL. Every statement runs in autocommit, so one statement is one short
 * transaction, with the pool's lock_timeout and statement_timeout.
 *
 * The shape of every delete:
 *
 *   DELETE ... WHERE id = ANY(ARRAY(SELECT id ... WHERE <selector> ORDER BY id))
 *
 * - No SKIP LOCKED: a revocation never skips a row. A session being refreshed at that moment (its
 *   row locked by the auth service's UPDATE) is waited for, up to lock_timeout; the caller retries
 *   the statement after a lock timeout (55P03) or a deadlock (40P01).
 * - The DELETE locks the rows it deletes as it reaches them through the primary key, and a btree
 *   scan for `id = ANY(array)` takes the array's values in ascending order: every revocation locks
 *   its rows in primary-key order, so concurrent revocations over overlapping users never wait on
 *   each other in a cycle. (No FOR UPDATE: every row-locking clause needs UPDATE privilege, and the
 *   worker's role has only SELECT and DELETE on the sessions table, sql/roles.sql.)
 * - `= ANY(ARRAY(SELECT ...))`, never `IN (SELECT ...)`: from ~15k ids the planner turns the IN
 *   form into a hash semi join over a sequential scan of the whole table
 *   (as measured for this project); the array keeps the primary-key index scan.
 * - The inner SELECT goes through the index of its selector: user_id (refresh_session_user_id_idx),
 *   jti (refresh_session_jti_key), or a primary-key range for issuedBefore alone (created_at has no
 *   index, so the table is walked in primary-key ranges, never deleted in one statement).
 * - Users and jtis are probed one key at a time, a nested loop over the chunk's array:
 *
 *     SELECT s.id FROM unnest($1) AS k(key)
 *       CROSS JOIN LATERAL (SELECT id FROM t WHERE t.key = k.key ... OFFSET 0) AS s
 *
 *   `key = ANY($1)` over the whole chunk leaves the index on some majors and sizes: PostgreSQL 15
 *   plans a 1,000-user (or 1,000-jti) chunk over a 50,000-row table as a sequential scan, in custom
 *   and generic plans (test/plans.test.ts; 18 keeps the index there). The lateral probe cannot be
 *   planned as one scan of the table: OFFSET 0 keeps the planner from pulling the subquery up into
 *   a join it could then run as a hash join over a sequential scan, so each key is one index probe
 *   whatever the statistics, on every major from 13 to 18 (npm run test:matrix).
 *
 * - No RETURNING and no CTE around the delete: the rows a statement deleted are its command tag's
 *   row count. `WITH gone AS (DELETE ... RETURNING 1) SELECT count(*)` (the shape before) fetched
 *   every deleted row a second time from the heap to project it (docs/performance.md).
 *
 * A row that another transaction deleted while we waited for its lock is not counted (and not an
 * error): revoking is idempotent.
 *
 * The revocation's connections commit asynchronously (db/sql/session.ts).
 */
import type { QualifiedName } from '../../config.ts';
import { qualified, statementName, type Statement } from './identifiers.ts';

const deleteLocked = (table: string, victims: string) => `DELETE FROM ${table}
 WHERE id = ANY(ARRAY(
   SELECT id FROM ${table}
    WHERE ${victims}
    ORDER BY id))`;

/** deleteLocked for the sessions of each key of the array `keys` (`unnest(...) AS k(key)`) that match `match`. */
const deleteProbed = (table: string, keys: string, match: string) => `DELETE FROM ${table}
 WHERE id = ANY(ARRAY(
   SELECT s.id FROM ${keys}
    CROSS JOIN LATERAL (SELECT t.id FROM ${table} AS t WHERE ${match} OFFSET 0) AS s
    ORDER BY s.id))`;

/**
 * Sessions of the users $1 (int[], a chunk of at most IDS_PER_STATEMENT ids: tasks/revoke.ts), but
 * the session whose jti is $2 (uuid, null: none), created before $3 (timestamptz, null: any time),
 * at most $4 (int) of them a statement. Covers the selectors userId, userId + exceptJti, userId +
 * issuedBefore and userIds.
 *
 * The cap: a user may have any number of sessions (an import, a bot, a million), and without it
 * one statement would delete them all in one transaction. The probes stop after $4 ids (the LIMIT
 * over the nested loop), and only those are sorted into id order; the caller runs the statement
 * again until one deletes nothing. Each statement starts the user's index entries from the
 * beginning again and steps over the ones the statements before it deleted (dead entries).
 */
export function revokeByUsers(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('revoke_users', table),
    text: `DELETE FROM ${t}
 WHERE id = ANY(ARRAY(
   SELECT v.id FROM (
     SELECT s.id FROM unnest($1::int[]) AS k(user_id)
      CROSS JOIN LATERAL (SELECT t.id FROM ${t} AS t
                           WHERE t.user_id = k.user_id
                             AND ($2::uuid IS NULL OR t.jti <> $2::uuid)
                             AND ($3::timestamptz IS NULL OR t.created_at < $3::timestamptz)
                          OFFSET 0) AS s
      LIMIT $4::int) AS v
    ORDER BY v.id))`,
  };
}

/** The sessions whose jti is in $1 (uuid[], a chunk of at most IDS_PER_STATEMENT). */
export function revokeByJtis(table: QualifiedName): Statement {
  return {
    name: statementName('revoke_jtis', table),
    text: deleteProbed(qualified(table), 'unnest($1::uuid[]) AS k(jti)', 't.jti = k.jti'),
  };
}

/**
 * The sessions created before $3 (timestamptz) among ids $1 (inclusive) to $2 (exclusive), both
 * bigint so that the end of the last range may pass the largest integer id.
 */
export function revokeIdRange(table: QualifiedName): Statement {
  return {
    name: statementName('revoke_range', table),
    text: deleteLocked(qualified(table), 'id >= $1::bigint AND id < $2::bigint AND created_at < $3::timestamptz'),
  };
}

/** The smallest and largest session id (both null on an empty table): the walk of issuedBefore. */
export function sessionIdBounds(table: QualifiedName): Statement {
  const t = qualified(table);
  return {
    name: statementName('revoke_bounds', table),
    text: `SELECT (SELECT min(id) FROM ${t}) AS lo, (SELECT max(id) FROM ${t}) AS hi`,
  };
}
