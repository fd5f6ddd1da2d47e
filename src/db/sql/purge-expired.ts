/**
 * The purge's SQL. One batch is two statements on the lane's own connection, the delete in
 * autocommit, so one short transaction (while nobody writes, the bound is read ahead on a spare
 * connection as the batch before deletes, and the pause read again: tasks/purge-expired.ts, BoundAhead):
 *
 *   1. purgeBound: the expires_at of the batch-size-th purgeable row after the cursor, read through
 *      the expires_at index (an index-only scan that stops after N entries), and the WAL position;
 *   2. purgeBatch: DELETE every purgeable row from the cursor up to and including that bound, a
 *      range scan of the same index, no RETURNING; the row count comes from the command tag.
 *
 * Deleting the whole range up to the bound (ties included) lets the cursor move to the bound
 * itself, so the next batch starts strictly after it and never re-reads the dead index entries of
 * the batches before it (a LIMIT loop without a cursor slows down by ~75 ms per batch per million
 * dead entries under an old snapshot, as measured for this project). It takes no row locks
 * and makes no second pass through the primary key.
 *
 * Ties: the range up to the bound holds every row tied with it, so many rows on one instant (a
 * mass logout, an import, expiry on a fixed grid) would make one batch of all of them. purgeBound
 * therefore reads tieSlack(size) more entries past the bound: when they all still equal the bound, the
 * tie is too large for the batch, and the caller deletes up to it, the tie excluded (the
 * `_before` statements), then walks the tie by itself (purgeTieIds, purgeIds). Otherwise the
 * batch deletes at most its size plus the slack (a tenth of it).
 *
 * Within one instant the expires_at btree keeps its entries in heap order (the heap TID has been
 * the last key column of every btree since PostgreSQL 12, posting lists included): the tie is a
 * keyset on ctid, read through the same index, `expires_at = $1 AND ctid > $2`, at most the batch
 * size per statement, deleted by id. Each tie batch starts its index scan at the first entry of the instant, and
 * skips the entries the batches before it deleted: cheap once a scan has marked them dead, the
 * re-reads of the note above while an old snapshot keeps them alive. A row the auth service
 * updates meanwhile gets a new ctid; below the cursor it is left for the next run, like a held row.
 * ctid is never kept beyond the run.
 *
 * Why two statements rather than one `WITH bound AS (...), gone AS (DELETE ... RETURNING 1)
 * SELECT count(*), bound` (the shape before): DELETE ... RETURNING fetches every deleted row again
 * from the heap to project it, whatever the RETURNING list, which made each deleted row cost about
 * 1.6 times what it costs the single statement (measured: the single statement itself goes from
 * 130 to 220 ms for 200k rows with `RETURNING 1`). A second round trip per batch is far cheaper.
 *
 * The bound is a parameter of the delete, read just before it (another snapshot): a row that
 * becomes purgeable in between below the bound is deleted too; one whose expires_at moves out of
 * the purgeable range is not (the delete re-checks every row). Only the batch's size depends on it.
 *
 * The cutoff is the database's: `now() - grace`, evaluated per statement, so per batch.
 *
 * Parameters: $1 lower bound (timestamptz text; the cursor), $2 upper bound of the slice
 * ('infinity' for the last one), $3 grace in seconds, then $4 the batch size, $5 tieSlack($4) + 1
 * and $6 the pause's task name (purgeBound) or the bound (purgeBatch, purgeBatchExceptHeld,
 * purgeCandidates; 'infinity' when purgeBound found none: the rest of the slice). purgeTieIds: $1
 * the instant, $2 the ctid after which the batch starts (FIRST_TID at first), $3 grace, $4 the
 * batch size, $5 the pause's task name. The bound and the
 * slice boundaries travel as instantText (timestamps.ts), never in the session's DateStyle.
 *
 * ±infinity: a '-infinity' expires_at is purgeable and sorts first: it falls in the first slice,
 * whose lower end is '-infinity' inclusive; a large tie on it is walked like any other.
 * 'infinity' never is. purgeSliceBoundaries computes on finite values only.
 */
import type { QualifiedName } from '../../config.ts';
import { asTarget, type PurgeTarget } from './purge-target.ts';
import { NOT_HELD } from './held-rows.ts';
import { pausedNow } from './pause.ts';
import { qualified, quote, statementName, type Statement } from './identifiers.ts';
import { instantText } from './timestamps.ts';

/** The sessions table (a bare name) or an extra table of JANITOR_PURGE_TABLES with its columns. */
type Target = QualifiedName | PurgeTarget;

const purgeable = (e: string, lower: '>=' | '>') =>
  `${e} ${lower} $1::timestamptz AND ${e} < $2::timestamptz AND ${e} < now() - make_interval(secs => $3::float8)`;

/** The quoted expiry column and key column, the qualified table, and `= ANY($1…)` for the key's array. */
function parts(target: Target) {
  const t = asTarget(target);
  const anyKeys = t.keyArray === null ? 'ANY($1)' : `ANY($1::${t.keyArray})`;
  return { table: t.table, q: qualified(t.table), e: quote(t.expiry), k: quote(t.key), anyKeys };
}

/** The WAL insert position as bytes since 0/0 (for the throttle's WAL cap, tasks/throttle.ts). */
const walPosition = `pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8`;

/** Entries purgeBound reads past the bound to see whether a tie there fits the batch: a tenth of the size. */
export const tieSlack = (size: number): number => Math.max(1, Math.ceil(size / 10));

/** Before every tuple (line pointers start at 1): the lower end of a tie that nothing was taken of. */
export const FIRST_TID = '(0,0)';

export interface BoundRow {
  /** null: fewer than the batch size are left in the slice; the batch takes them all. */
  readonly bound: string | null;
  /**
   * Whether the bound, read back from its text, lies after the cursor (at or after it for the
   * slice's first batch), so that the batch moves the cursor: false would be a run that makes no
   * progress, which the caller refuses.
   */
  readonly advances: boolean | null;
  /** The bound equals the cursor. */
  readonly at_cursor: boolean | null;
  /** The tieSlack(size) entries after the bound all equal it: the tie is walked by itself (purgeTieIds). */
  readonly tied: boolean;
  readonly wal: number;
  /**
   * Seconds the bound, the oldest row the batch leaves, has waited past its expiry and grace, by
   * the database's clock (the freshness floor, tasks/freshness.ts); null for -infinity or no bound.
   */
  readonly waited: number | null;
  /**
   * The task ($6, the pause's name: 'purge-expired' for an extra table too) is paused now: the
   * batch deletes nothing and the run stops. Read here, not in a statement of its own before every
   * batch: one round trip less a batch (docs/performance.md).
   */
  readonly paused: boolean;
}

/** The batch's bound and the WAL position before its delete. */
export function purgeBound(target: Target, lowerInclusive: boolean): Statement {
  const { table, q: t, e } = parts(target);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(lowerInclusive ? 'purge_bound_from' : 'purge_bound_after', table),
    // The rendering outside the subquery: inside, `ORDER BY expires_at` would name the text output
    // column and sort every row of the range by its text. OFFSET 0 keeps the planner from copying
    // the subquery into each of the rendering's references (one index scan, not three).
    // $5: tieSlack($4) + 1 entries from the bound on; all equal, the tie goes past the slack.
    text: `SELECT r.bound, r.bound::timestamptz ${lower} $1::timestamptz AS advances, r.bound::timestamptz = $1::timestamptz AS at_cursor,
       r.tied, r.wal, r.waited, ${pausedNow('$6')} AS paused
  FROM (SELECT ${instantText('b.expires_at')} AS bound, b.tied, ${walPosition} AS wal,
               CASE WHEN isfinite(b.expires_at) THEN extract(epoch FROM now() - b.expires_at)::float8 - $3::float8 END AS waited
          FROM (SELECT min(w.expires_at) AS expires_at, count(*) = $5::int AND min(w.expires_at) = max(w.expires_at) AS tied
                  FROM (SELECT ${e} AS expires_at FROM ${t}
                         WHERE ${purgeable(e, lower)}
                         ORDER BY ${e}
                        OFFSET $4::int - 1 LIMIT $5::int) AS w
                OFFSET 0) AS b) AS r`,
  };
}

/** `_before`: up to the bound, the rows on it excluded (a tie too large for the batch follows). */
const upTo = (e: string, upperInclusive: boolean) => `${e} ${upperInclusive ? '<=' : '<'} $4::timestamptz`;
const variant = (base: string, lowerInclusive: boolean, upperInclusive: boolean) =>
  `${base}_${lowerInclusive ? 'from' : 'after'}${upperInclusive ? '' : '_before'}`;

/**
 * The fast batch: a range delete. It waits for a row lock held by a concurrent transaction, at most
 * lock_timeout; the caller then retries the same range with purgeBatchExceptHeld.
 */
export function purgeBatch(target: Target, lowerInclusive: boolean, upperInclusive = true): Statement {
  const { table, q, e } = parts(target);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(variant('purge', lowerInclusive, upperInclusive), table),
    text: `DELETE FROM ${q} WHERE ${purgeable(e, lower)} AND ${upTo(e, upperInclusive)}`,
  };
}

/**
 * The same range, leaving out the rows another transaction holds (a refresh in flight: see
 * held-rows.ts, which says why this is not FOR UPDATE SKIP LOCKED): they stay, and a later run
 * purges them. The caller runs it after purgeBatch hit lock_timeout.
 */
export function purgeBatchExceptHeld(target: Target, lowerInclusive: boolean, upperInclusive = true): Statement {
  const { table, q, e } = parts(target);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(variant('purge_except_held', lowerInclusive, upperInclusive), table),
    text: `DELETE FROM ${q} WHERE ${purgeable(e, lower)} AND ${upTo(e, upperInclusive)} AND ${NOT_HELD}`,
  };
}

/** The ids of the same range, read without locks: the fallback when purgeBatchExceptHeld timed out too. */
export function purgeCandidates(target: Target, lowerInclusive: boolean, upperInclusive = true): Statement {
  const { table, q, e, k } = parts(target);
  const lower = lowerInclusive ? '>=' : '>';
  return {
    name: statementName(variant('purge_candidates', lowerInclusive, upperInclusive), table),
    text: `SELECT ${k} AS id FROM ${q} WHERE ${purgeable(e, lower)} AND ${upTo(e, upperInclusive)}`,
  };
}

/**
 * Purgeable rows on the instant $1 after the ctid $2 ($3 grace in seconds), through the expires_at
 * index. The ctid bound is a row comparison, not `ctid > $2`: PostgreSQL 14 and later plan a bare
 * ctid range as a TID Range Scan, which reads every block of the range instead of the instant's
 * index entries (test/plans.test.ts).
 */
const inTie = (e: string) => `${e} = $1::timestamptz AND (${e}, ctid) > ($1::timestamptz, $2::tid) AND ${e} < now() - make_interval(secs => $3::float8)`;

/**
 * A tie batch's rows: the ids of the next $4 purgeable rows of the tie after the cursor, in index
 * (heap) order, and the ctid of the last of them (the next cursor), counted (fewer than $4: the tie
 * is done); and the WAL position. The delete then goes by id through the primary key (purgeIds),
 * so that it does not read the rest of the tie: a ctid bound is no index condition, and a delete
 * `WHERE expires_at = $1 AND ctid <= $4` reads every entry of the instant (measured: the 120,000-row
 * tie of the benchmark purged at 2,100 rows/s). A plain index scan (ctid is not in the index).
 */
export function purgeTieIds(target: Target): Statement {
  const { table, q, e, k } = parts(target);
  return {
    name: statementName('purge_tie_ids', table),
    text: `SELECT array_agg(s.id) AS ids, (array_agg(s.ctid ORDER BY s.ctid DESC))[1]::text AS tid, count(*)::int AS n, ${walPosition} AS wal,
       ${pausedNow('$5')} AS paused
  FROM (SELECT ${k} AS id, ctid FROM ${q}
         WHERE ${inTie(e)}
         ORDER BY ${e}
         LIMIT $4::int) AS s`,
  };
}

export interface TieIdsRow {
  /** null: no row is left in the tie. */
  readonly ids: SessionIdText[] | null;
  readonly tid: string | null;
  readonly n: number;
  readonly wal: number;
  /** BoundRow.paused. */
  readonly paused: boolean;
}

/** A key as node-pg returns it in an array (a bigint or a uuid as text). */
type SessionIdText = string;

/** The rows among the keys $1 (the key's array) still purgeable (re-checked: read before), $2 grace in seconds. */
export function purgeIds(target: Target): Statement {
  const { table, q, e, k, anyKeys } = parts(target);
  return {
    name: statementName('purge_ids', table),
    text: `DELETE FROM ${q} WHERE ${k} = ${anyKeys} AND ${e} < now() - make_interval(secs => $2::float8)`,
  };
}

/** purgeIds without the rows another transaction holds (as purgeBatchExceptHeld): a tie batch's first retry. */
export function purgeIdsExceptHeld(target: Target): Statement {
  const { table, q, e, k, anyKeys } = parts(target);
  return {
    name: statementName('purge_ids_except_held', table),
    text: `DELETE FROM ${q} WHERE ${k} = ${anyKeys} AND ${e} < now() - make_interval(secs => $2::float8) AND ${NOT_HELD}`,
  };
}

/** The WAL position after a delete, read only when the WAL cap is on. */
export const purgeWalPosition: Statement = { name: 'sj_purge_wal_position', text: `SELECT ${walPosition} AS wal` };

/**
 * Boundaries that cut the purgeable expires_at range into $2 slices of equal time, for purging on
 * several connections at once ($1 grace in seconds). No finite purgeable row: no boundaries. The
 * span starts at the oldest finite expires_at (one index probe past the '-infinity' entries):
 * arithmetic on '-infinity' fails (PostgreSQL 15, 16) or overflows (17 and later); the
 * '-infinity' rows are in the first slice anyway.
 */
export function purgeSliceBoundaries(target: Target): Statement {
  const { table, q: t, e } = parts(target);
  return {
    name: statementName('purge_slices', table),
    text: `WITH span AS (
    SELECT min(${e}) AS lo, now() - make_interval(secs => $1::float8) AS hi
      FROM ${t} WHERE ${e} > '-infinity' AND ${e} < now() - make_interval(secs => $1::float8)
  )
SELECT ${instantText('lo + (hi - lo) * g / $2::int')} AS boundary
  FROM span, generate_series(1, $2::int - 1) AS g
 WHERE lo IS NOT NULL
 ORDER BY g`,
  };
}

/** Purgeable rows ($1 grace in seconds), for --dry-run and the progress ETA. */
export function countPurgeable(target: Target): Statement {
  const { table, q, e } = parts(target);
  return {
    name: statementName('purge_count', table),
    text: `SELECT count(*)::bigint AS n FROM ${q} WHERE ${e} < now() - make_interval(secs => $1::float8)`,
  };
}

/**
 * Whether any row is purgeable ($1 grace in seconds): one probe of the expiry index. An extra table
 * with none ends its run here, before its brakes (the latency guard's baseline probes) and its lane.
 */
export function anyPurgeable(target: Target): Statement {
  const { table, q, e } = parts(target);
  return {
    name: statementName('purge_any', table),
    text: `SELECT EXISTS (SELECT 1 FROM ${q} WHERE ${e} < now() - make_interval(secs => $1::float8)) AS found`,
  };
}
