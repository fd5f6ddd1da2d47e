/**
 * Everything `session-janitor migrate` installs, in order: pg-boss's schema (by its start), the
 * worker's own schema, the queues of the contract, the schedules. Idempotent: a Kubernetes Job runs
 * it before every rollout, and the worker runs it on start unless JANITOR_MIGRATE=false.
 */
import type pg from 'pg';
import type { PgBoss } from 'pg-boss';
import { ensureQueues, ensureSchedules } from './boss.ts';
import type { Config } from './config.ts';
import { assertSchemasCompatible } from './db/compatibility.ts';
import { migrateOwnSchema } from './db/migrate.ts';
import type { Logger } from './logger.ts';

/**
 * Checks the schemas first (db/compatibility.ts), then starts boss (created with migrate: true when
 * migrate is true): pg-boss's own start would accept a newer pg-boss schema silently when it may
 * migrate, and refuse it with "requires migrations" (which `migrate` cannot fix) when it may not.
 */
export async function install(boss: PgBoss, pool: pg.Pool, config: Config, log: Logger, migrate: boolean): Promise<void> {
  await assertSchemasCompatible(pool, config, log, migrate ? 'migrate' : 'worker');
  await boss.start();
  if (migrate) {
    const applied = await migrateOwnSchema(pool, config);
    if (applied.length > 0) log.info({ versions: applied }, 'applied session_janitor schema migrations');
  }
  await ensureQueues(boss, config);
  await ensureSchedules(boss, config);
}
