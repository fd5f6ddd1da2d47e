#!/usr/bin/env node
/**
 * session-janitor <command>: the worker (`start`, the default) and the operator's commands of
 * docs/CONTRACT.md. Each command lives in commands/.
 *
 * Exit codes: 0 done, 1 a runtime failure (the database is unreachable, a query failed),
 * 64 (EX_USAGE) an invalid revocation request (`revoke`), 78 (EX_CONFIG) a bad configuration value.
 */
import { Command } from 'commander';
import { devUrlCommand } from './commands/dev-url.ts';
import { migrateCommand } from './commands/migrate.ts';
import { purgeExpiredCommand } from './commands/purge-expired.ts';
import { reapIdleCommand } from './commands/reap-idle.ts';
import { registerRevokeCommand } from './commands/revoke.ts';
import { startCommand } from './commands/start.ts';
import { CommandError } from './commands/process-edge.ts';
import { statusCommand } from './commands/status.ts';
import { safeErrorMessage } from './db/errors.ts';
import { describeBuild } from './build-info.ts';

const program = new Command('session-janitor')
  .description('Purges expired and idle refresh-token sessions and carries out revocations (pg-boss worker).')
  .version(describeBuild(), '-V, --version', 'print the version, git revision, pg-boss and Node.js versions')
  .showHelpAfterError();

program.command('start', { isDefault: true }).description('run the worker: schedules, consumers, metrics server').action(startCommand);
program
  .command('migrate')
  .description('install or upgrade the pg-boss schema, the session_janitor schema, the queues and the schedules, then exit')
  .action(migrateCommand);
program
  .command('purge-expired')
  .description('purge expired sessions now, in the foreground, with progress')
  .option('--dry-run', 'count what would be purged; delete nothing')
  .action(purgeExpiredCommand);
program
  .command('reap-idle')
  .description('reap idle sessions now (unused for JANITOR_IDLE_TIMEOUT), in the foreground, with progress')
  .option('--dry-run', 'count what would be reaped; delete nothing')
  .action(reapIdleCommand);

program
  .command('status')
  .description('queues and their depths, the dead-letter queue, schedules and last runs, the expired backlog')
  .option('--json', 'machine-readable output')
  .action(statusCommand);

program
  .command('dev-url')
  .description('print the DATABASE_URL of the embedded development PostgreSQL that a running `npm start` serves (for psql or a producer)')
  .action(devUrlCommand);

registerRevokeCommand(program);

// The one place a failed command becomes an exit code, after its `finally` blocks have run.
program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`session-janitor: ${safeErrorMessage(error)}\n`);
  process.exitCode = error instanceof CommandError ? error.exitCode : 1;
});
