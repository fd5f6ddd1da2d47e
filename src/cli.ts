#!/usr/bin/env node
/**
 * session-janitor <command>: the worker (`start`, the default) and the operator's commands of
 * docs/CONTRACT.md. Each command lives in commands/.
 *
 * Exit codes: 0 done, 1 a runtime failure (the database is unreachable, a query failed),
 * 64 (EX_USAGE) an unknown command or option, or an invalid revocation request (`revoke`), 78 (EX_CONFIG) a bad configuration value.
 */
import { Command, CommanderError } from 'commander';
import { devUrlCommand } from './commands/dev-url.ts';
import { migrateCommand } from './commands/migrate.ts';
import { purgeExpiredCommand } from './commands/purge-expired.ts';
import { reapIdleCommand } from './commands/reap-idle.ts';
import { EXIT_USAGE, registerRevokeCommand } from './commands/revoke.ts';
import { startCommand } from './commands/start.ts';
import { confirmCommand, pauseCommand, resumeCommand } from './commands/pause.ts';
import { CommandError } from './commands/process-edge.ts';
import { statusCommand } from './commands/status.ts';
import { commandLine } from './command-line.ts';
import { safeErrorMessage } from './db/errors.ts';
import { describeBuild } from './build-info.ts';

const program = new Command('session-janitor')
  .description('Purges expired and idle refresh-token sessions and carries out revocations (pg-boss worker).')
  .version(describeBuild(), '-V, --version', 'print the version, git revision, pg-boss and Node.js versions')
  // A usage error (an unknown option, a missing value) is one line and exit 64 (EX_USAGE), as
  // scripts expect of an invalid request; --help and help still exit 0.
  .exitOverride()
  .configureOutput({
    outputError: (text, write) =>
      write(
        `session-janitor: ${text
          .replace(/^error: /, '')
          .trim()
          .replaceAll('\n', ' ')} (see --help)\n`,
      ),
  });

program.command('start', { isDefault: true }).description('run the worker: schedules, consumers, metrics server').action(startCommand);
program
  .command('migrate')
  .description('install or upgrade the pg-boss schema, the session_janitor schema, the queues and the schedules, then exit')
  .action(migrateCommand);
program
  .command('purge-expired')
  .description('purge expired sessions, and the rows of each table of JANITOR_PURGE_TABLES, now, in the foreground, with progress')
  .option('--dry-run', 'count what would be purged; delete nothing')
  .option('--table <schema.table>', 'purge this table only (the sessions table or one of JANITOR_PURGE_TABLES)')
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
  .command('pause')
  .description(
    'pause a scheduled task (purge-expired, reap-idle) or all of them, cluster-wide: runs stop at their next batch; the pause ends by itself (revocations are never paused)',
  )
  .argument('<task>', 'purge-expired, reap-idle or all')
  .requiredOption('--for <duration>', 'how long, from 1s to 24h, e.g. 30m (pause again to renew)')
  .requiredOption('--reason <text>', 'why, shown by status (1 to 500 characters)')
  .action(pauseCommand);
program
  .command('resume')
  .description('end the pause of a task (or all) now: its next scheduled run deletes again')
  .argument('<task>', 'purge-expired, reap-idle or all')
  .action(resumeCommand);

program
  .command('confirm')
  .description('let a purge or reap that the blast-radius guard stopped go on: its next run deletes (recorded with the database role and the reason)')
  .argument('<task>', 'purge-expired, reap-idle or all')
  .requiredOption('--reason <text>', 'why the deletions are wanted (1 to 500 characters)')
  .action(confirmCommand);

program
  .command('dev-url')
  .description('print the DATABASE_URL of the embedded development PostgreSQL that a running `npm start` serves (for psql or a producer)')
  .action(devUrlCommand);

registerRevokeCommand(program);
program.addHelpText('after', `\nRun here as: ${commandLine('<command> [options]')}\n`);

// `start` is the default command, so commander would take a mistyped command (`purge`) for an
// argument of `start` ("too many arguments"): name the known ones instead, in one line.
const known = program.commands.flatMap((command) => [command.name(), ...command.aliases()]);
const first = process.argv[2];
if (first !== undefined && !first.startsWith('-') && first !== 'help' && !known.includes(first)) {
  const near = known.filter((name) => name.startsWith(first.slice(0, 3)) || first.startsWith(name));
  process.stderr.write(
    `session-janitor: unknown command ${JSON.stringify(first)}${near.length > 0 ? ` (did you mean ${near.join(' or ')}?)` : ''}; the commands: ${known.join(', ')}\n`,
  );
  process.exitCode = EXIT_USAGE;
} else {
  // The one place a failed command becomes an exit code, after its `finally` blocks have run.
  program.parseAsync(process.argv).catch((error: unknown) => {
    if (error instanceof CommanderError) {
      // commander has written its message (or the help) already.
      process.exitCode = error.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    process.stderr.write(`session-janitor: ${safeErrorMessage(error)}\n`);
    process.exitCode = error instanceof CommandError ? error.exitCode : 1;
  });
}
