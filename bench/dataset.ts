/**
 * The data set, built once into a template database, and a fresh identical copy of it per case.
 *
 * sessions rows for sessions/10 users, inserted in created_at order (as the auth service inserts
 * them) into the production table of sql/auth.sql with all its indexes, so the indexes grow as they
 * do in production. Created over the past 75 days with a 45-day lifetime, so:
 *   - 40% expired, their expires_at spread evenly over the past 30 days, clustered at the start of
 *     the heap (the oldest rows);
 *   - 20% live but idle: last_used_at more than 14 days ago;
 *   - the rest live and recently used.
 * Users are drawn at random, so one user's sessions are scattered over the heap (revocation).
 * random() is seeded: every build of a size is the same data set (bar gen_random_uuid()).
 */
import pg from 'pg';
import { createAuthTables } from '../src/db/dev-bootstrap.ts';
import { databaseUrlFor } from './db.ts';

export const TEMPLATE = 'sj_bench_template';
export const DAY = 86_400;
export const LIFETIME_DAYS = 45;
export const HISTORY_DAYS = 75;
export const IDLE_DAYS = 14;

export interface DataSet {
  readonly sessions: number;
  readonly users: number;
  readonly expired: number;
  readonly idle: number;
  readonly tableBytes: number;
  readonly indexBytes: number;
  readonly buildSeconds: number;
}

export async function buildTemplate(adminUrl: string, sessions: number, prepare?: (url: string) => Promise<void>): Promise<DataSet> {
  const started = performance.now();
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${TEMPLATE}`);
  } finally {
    await admin.end();
  }
  const url = databaseUrlFor(adminUrl, TEMPLATE);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  const users = Math.max(1, Math.round(sessions / 10));
  try {
    await createAuthTables(pool);
    await pool.query('CREATE EXTENSION IF NOT EXISTS pg_prewarm').catch(() => undefined);
    const client = await pool.connect();
    try {
      // Skips the per-row foreign-key trigger while loading (superuser only; the check is moot:
      // every user_id is in range).
      await client.query("SET session_replication_role = 'replica'").catch(() => undefined);
      await client.query('SELECT setseed(0.42)');
      await client.query(
        `INSERT INTO auth."user" (email, created_at)
         SELECT 'user-' || g || '@example.invalid', now() - interval '400 days' FROM generate_series(1, $1::int) AS g`,
        [users],
      );
      // f in (0, 1): the row's place in time. created_at = now - 75d + f * 75d; expires 45 days later,
      // so rows with f < 0.4 are expired. Live rows created more than 15 days ago are idle with the
      // probability that makes idle rows 20% of the total.
      await client.query(
        `WITH base AS (
           SELECT g, now() - make_interval(days => $3::int) + (g - 0.5) / $1::float8 * make_interval(days => $3::int) AS created_at
             FROM generate_series(1, $1::int) AS g
         )
         INSERT INTO auth.refresh_session (user_id, refresh_version, created_at, last_used_at, expires_at, user_agent, ip_address)
         SELECT 1 + floor(random() * $2::int)::int,
                floor(random() * 20)::int,
                created_at,
                CASE
                  WHEN created_at + make_interval(days => $4::int) < now()
                    THEN created_at + random() * make_interval(days => $4::int)
                  WHEN created_at < now() - make_interval(days => $5::int + 1) AND random() < $6::float8
                    THEN created_at + random() * (now() - make_interval(days => $5::int) - interval '1 hour' - created_at)
                  ELSE greatest(created_at, now() - make_interval(days => $5::int) + interval '1 hour')
                       + random() * (now() - greatest(created_at, now() - make_interval(days => $5::int) + interval '1 hour'))
                END,
                created_at + make_interval(days => $4::int),
                (ARRAY[
                  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
                  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148',
                  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
                  'okhttp/4.12.0 example-android/7.3.1'
                ])[1 + g % 4],
                ('10.' || (g >> 16) % 256 || '.' || (g >> 8) % 256 || '.' || g % 256)::inet
           FROM base
          ORDER BY g`,
        // Idle share among live rows created before now - 15d: 20% of all rows out of the
        // (45 - 15) / 75 = 40% of rows that are live and that old.
        [sessions, users, HISTORY_DAYS, LIFETIME_DAYS, IDLE_DAYS, 0.2 / ((LIFETIME_DAYS - IDLE_DAYS - 1) / HISTORY_DAYS)],
      );
      await client.query('RESET session_replication_role');
    } finally {
      client.release();
    }
    if (prepare) await prepare(url);
    await pool.query('VACUUM (ANALYZE, FREEZE)');
    await pool.query('CHECKPOINT');
    const { rows } = await pool.query<{ expired: number; idle: number; table_bytes: string; index_bytes: string }>(
      `SELECT count(*) FILTER (WHERE expires_at < now())::int AS expired,
              count(*) FILTER (WHERE expires_at >= now() AND last_used_at < now() - make_interval(days => $1::int))::int AS idle,
              pg_table_size('auth.refresh_session') AS table_bytes,
              pg_indexes_size('auth.refresh_session') AS index_bytes
         FROM auth.refresh_session`,
      [IDLE_DAYS],
    );
    const r = rows[0];
    return {
      sessions,
      users,
      expired: r?.expired ?? 0,
      idle: r?.idle ?? 0,
      tableBytes: Number(r?.table_bytes ?? 0),
      indexBytes: Number(r?.index_bytes ?? 0),
      buildSeconds: (performance.now() - started) / 1000,
    };
  } finally {
    await pool.end();
  }
}

/** A fresh copy `name` of the template, for a case that changes its rows (the tie's, the scattered one). */
async function copyTemplate(adminUrl: string, name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE}`);
  } finally {
    await admin.end();
  }
}

/** The mass-logout copy of the template (case T): every expired session on one expires_at. */
export const TIE_TEMPLATE = 'sj_bench_tie_template';

/**
 * A copy of the template where a mass logout happened a day ago: `UPDATE ... SET expires_at = <one
 * instant>` over every expired session (the shape of issue "every batch bounded": ties on
 * expires_at), then vacuumed like the template. Returns the rows on the instant.
 */
export async function buildTieTemplate(adminUrl: string): Promise<number> {
  await copyTemplate(adminUrl, TIE_TEMPLATE);
  const pool = new pg.Pool({ connectionString: databaseUrlFor(adminUrl, TIE_TEMPLATE), max: 1 });
  try {
    const { rowCount } = await pool.query(
      `UPDATE auth.refresh_session SET expires_at = date_trunc('minute', now()) - interval '1 day' WHERE expires_at < now()`,
    );
    await pool.query('VACUUM (ANALYZE, FREEZE)');
    await pool.query('CHECKPOINT');
    return rowCount ?? 0;
  } finally {
    await pool.end();
  }
}

/** The scattered copy of the template (case S): the same rows in random heap order. */
export const SCATTERED_TEMPLATE = 'sj_bench_scattered_template';

/**
 * A copy of the template whose rows lie in random heap order: a table after months of refreshes
 * and purges, whose new rows fill the space the purged ones left, has its expired rows spread over
 * every page rather than at the start of the heap (the template's layout, a young table's). Same
 * rows, same ids, same indexes (rebuilt by the insert). Returns the heap pages that hold an
 * expired row, against all pages.
 */
export async function buildScatteredTemplate(adminUrl: string): Promise<{ pagesWithExpired: number; pages: number }> {
  await copyTemplate(adminUrl, SCATTERED_TEMPLATE);
  const client = new pg.Client({ connectionString: databaseUrlFor(adminUrl, SCATTERED_TEMPLATE) });
  await client.connect();
  try {
    await client.query("SET session_replication_role = 'replica'").catch(() => undefined);
    await client.query('CREATE TEMPORARY TABLE shuffled AS SELECT * FROM auth.refresh_session');
    await client.query('TRUNCATE auth.refresh_session');
    await client.query('SELECT setseed(0.42)');
    await client.query('INSERT INTO auth.refresh_session OVERRIDING SYSTEM VALUE SELECT * FROM shuffled ORDER BY random()');
    await client.query('RESET session_replication_role');
    await client.query('VACUUM (ANALYZE, FREEZE) auth.refresh_session');
    await client.query('CHECKPOINT');
    const { rows } = await client.query<{ with_expired: number; pages: number }>(
      `SELECT count(DISTINCT (ctid::text::point)[0]) FILTER (WHERE expires_at < now())::int AS with_expired,
              count(DISTINCT (ctid::text::point)[0])::int AS pages
         FROM auth.refresh_session`,
    );
    return { pagesWithExpired: rows[0]?.with_expired ?? 0, pages: rows[0]?.pages ?? 0 };
  } finally {
    await client.end();
  }
}
