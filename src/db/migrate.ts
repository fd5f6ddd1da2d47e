/**
 * Installs or upgrades the worker's own schema (see db/sql/migrations.ts). pg-boss installs its own.
 */
import type pg from 'pg';
import { buildInfo } from '../build-info.ts';
import type { Config } from '../config.ts';
import {
  LATEST_VERSION,
  MIGRATION_LOCK_KEY,
  MIGRATIONS,
  currentVersion,
  recordDetails,
  recordVersion,
  versionTableExists,
  versionTableHasDetails,
  type Migration,
} from './sql/migrations.ts';

/**
 * What `migrate` applies: this release's migrations, recorded with its version. Tests give another
 * (a later release's, with a synthetic migration) to build the database that release would leave.
 */
export interface MigrationPlan {
  readonly migrations: readonly Migration[];
  readonly release: string;
}

/**
 * Applies the missing migrations (up to `upTo`, the latest by default: tests stop earlier to
 * build a database of an earlier release); returns the versions applied.
 */
export async function migrateOwnSchema(
  pool: pg.Pool,
  config: Config,
  upTo: number = LATEST_VERSION,
  plan: MigrationPlan = { migrations: MIGRATIONS, release: buildInfo().version },
): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    // DDL on a busy database may wait for locks: no statement or lock timeout for migrations.
    await client.query('SET statement_timeout = 0; SET lock_timeout = 0');
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const version = await readVersion(client);
      for (const migration of plan.migrations.filter((m) => m.version > version && m.version <= upTo)) {
        await client.query('BEGIN');
        try {
          await client.query(migration.sql(config));
          await client.query({ ...recordVersion, values: [migration.version] });
          // From migration 6 on, the row also says whether it is breaking and which release applied
          // it: what an earlier release reads to decide whether it may run (db/compatibility.ts).
          if ((await client.query<{ present: boolean }>(versionTableHasDetails)).rows[0]?.present) {
            await client.query({ ...recordDetails, values: [migration.version, migration.breaking, plan.release] });
          }
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw error;
        }
        applied.push(migration.version);
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  } finally {
    // Closed, not returned: its session has no statement or lock timeout, and the pool's next user
    // (the worker's first purge or reap) would wait for a held row for ever.
    client.release(true);
  }
  return applied;
}

export async function readVersion(db: pg.Pool | pg.PoolClient): Promise<number> {
  const exists = await db.query<{ present: boolean }>(versionTableExists);
  if (!exists.rows[0]?.present) return 0;
  const { rows } = await db.query<{ version: number }>(currentVersion);
  return rows[0]?.version ?? 0;
}
