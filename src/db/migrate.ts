/**
 * Installs or upgrades the worker's own schema (see db/sql/migrations.ts). pg-boss installs its own.
 */
import type pg from 'pg';
import type { Config } from '../config.ts';
import { LATEST_VERSION, MIGRATION_LOCK_KEY, MIGRATIONS, currentVersion, recordVersion, versionTableExists } from './sql/migrations.ts';
import { commandLine } from '../command-line.ts';

/**
 * Applies the missing migrations (up to `upTo`, the latest by default: tests stop earlier to
 * build a database of an earlier release); returns the versions applied.
 */
export async function migrateOwnSchema(pool: pg.Pool, config: Config, upTo: number = LATEST_VERSION): Promise<number[]> {
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    // DDL on a busy database may wait for locks: no statement or lock timeout for migrations.
    await client.query('SET statement_timeout = 0; SET lock_timeout = 0');
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const version = await readVersion(client);
      for (const migration of MIGRATIONS.filter((m) => m.version > version && m.version <= upTo)) {
        await client.query('BEGIN');
        try {
          await client.query(migration.sql(config));
          await client.query({ ...recordVersion, values: [migration.version] });
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

/** For JANITOR_MIGRATE=false: refuse to run against a schema that `migrate` has not brought up to date. */
export async function assertOwnSchemaCurrent(pool: pg.Pool): Promise<void> {
  const version = await readVersion(pool);
  if (version !== LATEST_VERSION) {
    throw new Error(
      `the session_janitor schema is at version ${version}, this worker needs ${LATEST_VERSION}: run \`${commandLine('migrate')}\` (JANITOR_MIGRATE=false forbids the worker to do it)`,
    );
  }
}
