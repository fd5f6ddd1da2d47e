/**
 * Everything `session-janitor migrate` installs, in order: pg-boss's schema (by its start), the
 * worker's own schema, the queues of the contract, the schedules. Idempotent: a Kubernetes Job runs
 * it before every rollout, and the worker runs it on start unless JANITOR_MIGRATE=false.
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { ensureQueues, ensureSchedules } from './boss.ts';
import type { Config } from './config.ts';
import { assertOwnSchemaCurrent, migrateOwnSchema } from './db/migrate.ts';
import type { Logger } from './logger.ts';

/** boss must be started (with migrate: true when migrate is true). */
export async function install(boss: PgBoss, pool: pg.Pool, config: Config, log: Logger, migrate: boolean): Promise<void> {
  if (migrate) {
    const applied = await migrateOwnSchema(pool, config);
    if (applied.length > 0) log.info({ versions: applied }, 'applied session_janitor schema migrations');
  } else {
    await assertOwnSchemaCurrent(pool);
  }
  await ensureQueues(boss, config);
  await ensureSchedules(boss, config);
}
