/**
 * Every batch statement the worker runs keeps the access path its comment claims: the expires_at
 * index for the purge, the primary key for the reaper's ranges, the user_id and jti indexes (then
 * the primary key) for revocations. Checked on a small table and on one with realistic statistics
 * (a million rows, ANALYZEd, a chunk of the default size), in both plan modes a prepared statement
 * can run in (custom plans for its first five executions, then maybe the generic one), on whatever
 * major the run's server is (npm run test:matrix runs this file on 13 to 18): the planner's choices
 * differ between majors and sizes, and a statement that leaves its index scans the whole table once
 * per batch.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Statement } from '../src/db/sql/identifiers.ts';
import {
  FIRST_TID,
  purgeBatch,
  purgeBatchExceptHeld,
  purgeBound,
  purgeCandidates,
  purgeIds,
  purgeIdsExceptHeld,
  purgeTieIds,
  tieSlack,
} from '../src/db/sql/purge-expired.ts';
import { positionKey, reapIds, reapRange, reapRangeCandidates, reapRangeExceptHeld, startPass } from '../src/db/sql/reap-idle.ts';
import { revokeByJtis, revokeByUsers, revokeIdRange, sessionIdBounds } from '../src/db/sql/revoke.ts';
import { IDS_PER_STATEMENT } from '../src/tasks/revoke.ts';
import { useTestDatabase } from './helpers/database.ts';
import { sessionIndexes, sessionScans } from './helpers/plans.ts';

const TABLE = { schema: 'auth', name: 'refresh_session' };
const HOUR = 3600;
/** The largest batches the defaults allow: JANITOR_BATCH_MAX_SIZE rows (a purge while nobody writes) or ids. */
const PURGE_BATCH = 20_000;
const RANGE_IDS = 20_000;

const SIZES = [
  // A user chunk of a fifth of the users: the case where PostgreSQL 15 left the user_id index.
  { name: 'small', sessions: 50_000, users: 5000, chunk: 1000 },
  { name: 'a million rows', sessions: 1_000_000, users: 200_000, chunk: IDS_PER_STATEMENT },
];

interface Case {
  readonly statement: Statement;
  readonly values: unknown[];
  /** The indexes of auth.refresh_session the plan reads, sorted. */
  readonly indexes: string[];
}

describe('plans', () => {
  const db = useTestDatabase();

  for (const size of SIZES) {
    test(`${size.name}: every batch statement keeps its index, generic and custom plans`, async () => {
      await db.pool.query('TRUNCATE auth.refresh_session, auth."user" CASCADE');
      await db.pool.query(`INSERT INTO auth."user" (email) SELECT 'plan-' || g || '@example.invalid' FROM generate_series(1, $1::int) g`, [size.users]);
      // Loaded the way pg_restore loads a table: the rows first, then the secondary indexes built
      // from the schema's own definitions (a million rows inserted one by one into four indexes
      // take about a minute, on each of six majors). The foreign key is not checked row by row:
      // every user_id is one of the users above.
      const { rows: indexes } = await db.pool.query<{ name: string; constraint: string | null; indexdef: string; condef: string | null }>(
        `SELECT i.indexrelid::regclass::text AS name, c.conname AS constraint, pg_get_indexdef(i.indexrelid) AS indexdef, pg_get_constraintdef(c.oid) AS condef
           FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
          WHERE i.indrelid = 'auth.refresh_session'::regclass AND NOT i.indisprimary`,
      );
      assert.equal(indexes.length, 3, JSON.stringify(indexes));
      for (const index of indexes) {
        await db.pool.query(index.constraint ? `ALTER TABLE auth.refresh_session DROP CONSTRAINT "${index.constraint}"` : `DROP INDEX ${index.name}`);
      }
      // Five sessions a user, in id order user after user's (sessions of a user are not neighbours
      // in the heap); 40% expired, 20% idle for two hours, created over the last 30 days. One in
      // fifty expired on one instant two days ago (a mass logout: the purge's tie shape).
      const load = await db.pool.connect();
      try {
        await load.query('BEGIN');
        await load.query('SET LOCAL session_replication_role = replica');
        await load.query(
          `INSERT INTO auth.refresh_session (user_id, created_at, last_used_at, expires_at)
           SELECT u.lo + (g % $2::int),
                  now() - make_interval(secs => (g % 2592000)),
                  CASE WHEN g % 5 = 0 THEN now() - interval '2 hours' ELSE now() END,
                  CASE WHEN g % 50 = 1 THEN date_trunc('hour', now()) - interval '2 days'
                       WHEN g % 5 < 2 THEN now() - make_interval(secs => 60 + g % 86400)
                       ELSE now() + interval '30 days' END
             FROM generate_series(1, $1::int) g, (SELECT min(id) AS lo FROM auth."user") u`,
          [size.sessions, size.users],
        );
        await load.query('COMMIT');
      } finally {
        load.release();
      }
      for (const index of indexes) {
        await db.pool.query(index.constraint ? `ALTER TABLE auth.refresh_session ADD CONSTRAINT "${index.constraint}" ${index.condef}` : index.indexdef);
      }
      await db.pool.query('ANALYZE auth.refresh_session');
      const { rows: users } = await db.pool.query<{ user_id: number }>('SELECT DISTINCT user_id FROM auth.refresh_session ORDER BY user_id LIMIT $1', [
        size.chunk,
      ]);
      const { rows: some } = await db.pool.query<{ id: number; jti: string; user_id: number }>(
        'SELECT id, jti, user_id FROM auth.refresh_session ORDER BY id LIMIT $1',
        [size.chunk],
      );
      const ids = some.map((r) => r.id);
      const first = some[0];
      assert.ok(first);
      const now = new Date().toISOString();
      const bound = (await db.pool.query<{ b: string }>(`SELECT (now() - interval '1 hour')::text AS b`)).rows[0]?.b;
      const tie = (
        await db.pool.query<{ at: string; tid: string }>(
          `SELECT (date_trunc('hour', now()) - interval '2 days')::text AS at,
                (SELECT ctid::text FROM auth.refresh_session WHERE expires_at = date_trunc('hour', now()) - interval '2 days' OFFSET 500 LIMIT 1) AS tid`,
        )
      ).rows[0];
      assert.ok(tie?.tid, 'the tie has more than 500 rows');
      const expires = ['refresh_session_expires_at_idx'];
      const pkey = ['refresh_session_pkey'];
      const cases: Case[] = [
        ...[true, false].flatMap((from) => [
          {
            statement: purgeBound(TABLE, from),
            values: ['-infinity', 'infinity', 0, PURGE_BATCH, tieSlack(PURGE_BATCH) + 1, 'purge-expired'],
            indexes: expires,
          },
          // From the cursor on the tie: its entries are the first the bound statement reads.
          { statement: purgeBound(TABLE, from), values: [tie.at, 'infinity', 0, PURGE_BATCH, tieSlack(PURGE_BATCH) + 1, 'purge-expired'], indexes: expires },
          ...[true, false].flatMap((upTo) => [
            { statement: purgeBatch(TABLE, from, upTo), values: ['-infinity', 'infinity', 0, upTo ? bound : tie.at], indexes: expires },
            { statement: purgeBatchExceptHeld(TABLE, from, upTo), values: ['-infinity', 'infinity', 0, upTo ? bound : tie.at], indexes: expires },
            { statement: purgeCandidates(TABLE, from, upTo), values: ['-infinity', 'infinity', 0, upTo ? bound : tie.at], indexes: expires },
          ]),
        ]),
        // The tie walked by itself: the instant's entries of the expires_at index, in heap order,
        // then deleted by id.
        { statement: purgeTieIds(TABLE), values: [tie.at, FIRST_TID, 0, PURGE_BATCH, 'purge-expired'], indexes: expires },
        { statement: purgeTieIds(TABLE), values: [tie.at, tie.tid, 0, PURGE_BATCH, 'purge-expired'], indexes: expires },
        { statement: purgeIdsExceptHeld(TABLE), values: [ids, 0], indexes: pkey },
        { statement: purgeIds(TABLE), values: [ids, 0], indexes: pkey },
        { statement: startPass(TABLE), values: [positionKey(TABLE)], indexes: pkey },
        ...[reapRange(TABLE), reapRangeExceptHeld(TABLE)].map((statement) => ({
          statement,
          values: [positionKey(TABLE), 1, first.id + RANGE_IDS, first.id + 2 * RANGE_IDS, HOUR, 0],
          indexes: pkey,
        })),
        { statement: reapRangeCandidates(TABLE), values: [first.id + RANGE_IDS, first.id + 2 * RANGE_IDS, HOUR], indexes: pkey },
        { statement: reapIds(TABLE), values: [ids, HOUR], indexes: pkey },
        {
          statement: revokeByUsers(TABLE),
          values: [users.map((r) => r.user_id), null, null, RANGE_IDS],
          indexes: ['refresh_session_pkey', 'refresh_session_user_id_idx'],
        },
        {
          statement: revokeByUsers(TABLE),
          values: [[first.user_id], first.jti, now, RANGE_IDS],
          indexes: ['refresh_session_pkey', 'refresh_session_user_id_idx'],
        },
        { statement: revokeByJtis(TABLE), values: [some.map((r) => r.jti)], indexes: ['refresh_session_jti_key', 'refresh_session_pkey'] },
        { statement: revokeIdRange(TABLE), values: [first.id, first.id + RANGE_IDS, now], indexes: pkey },
        { statement: sessionIdBounds(TABLE), values: [], indexes: pkey },
      ];
      const failures: string[] = [];
      for (const generic of [false, true]) {
        for (const { statement, values, indexes } of cases) {
          const plan = await explain(statement, values, generic);
          const mode = generic ? 'generic' : 'custom';
          const seq = sessionScans(plan).some((n) => n['Node Type'] === 'Seq Scan');
          const used = sessionIndexes(plan);
          if (seq || JSON.stringify(used) !== JSON.stringify(indexes)) {
            failures.push(`${statement.name} (${mode}): ${seq ? 'Seq Scan, ' : ''}indexes ${used.join(', ') || 'none'}, expected ${indexes.join(', ')}`);
          }
        }
      }
      const { rows: version } = await db.pool.query<{ server_version: string }>('SHOW server_version');
      assert.deepEqual(failures, [], `PostgreSQL ${version[0]?.server_version}, ${size.name}`);
    });
  }

  async function explain(statement: Statement, values: unknown[], generic: boolean): Promise<unknown> {
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SET LOCAL plan_cache_mode = '${generic ? 'force_generic_plan' : 'force_custom_plan'}'`);
      const { rows } = await client.query<{ 'QUERY PLAN': unknown }>({ text: `EXPLAIN (FORMAT JSON) ${statement.text}`, values });
      return rows[0]?.['QUERY PLAN'];
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  }
});
