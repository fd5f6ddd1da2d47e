/**
 * Where the process meets the outside: SIGTERM/SIGINT (the first graceful, a second forceful), an
 * exception nobody caught while shutting down, and a promise rejection nobody handled. The only
 * process.exit() calls of the program are here; a command that fails throws a CommandError, which
 * cli.ts turns into its exit code once the command's `finally` blocks have closed the database.
 */
import { sqlState } from '../db/errors.ts';
import type { Logger } from '../logger.ts';

/** A failure for the operator: cli.ts prints the message as one line and exits with exitCode. */
export class CommandError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

export function fail(message: string, exitCode: number): never {
  throw new CommandError(message, exitCode);
}

function isConnectionLoss(error: unknown): boolean {
  const code = sqlState(error);
  return code === '57P01' || code === '57P02' || code === '57P03' || code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * The first SIGTERM/SIGINT runs graceful, then (with exitAfter) exits 0, or 1 when graceful
 * rejects: a supervisor must not take a failed shutdown for a clean stop. A second signal exits 1
 * at once. Returns the unsubscribe.
 */
export function onProcessEvents(graceful: () => Promise<void>, log: Logger, exitAfter = true): () => void {
  let received = false;
  // pg-boss 12.38 closes its LISTEN client after removing that client's 'error' listener, so a
  // database that goes away during our shutdown (a server stopped by another process, say) raises
  // an unhandled 'error' event. While shutting down, a lost connection is expected: log it and
  // finish the shutdown.
  const uncaught = (error: unknown) => {
    if (!isConnectionLoss(error)) {
      log.fatal({ err: error }, 'uncaught exception during shutdown');
      process.exit(1);
    }
    log.warn({ err: error }, 'database connection lost during shutdown');
  };
  const unhandled = (reason: unknown) => {
    log.fatal({ err: reason }, 'unhandled rejection');
    process.exit(1);
  };
  const signalled = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    received = true;
    log.info({ signal }, 'signal received: shutting down gracefully (send it again to force)');
    process.on('uncaughtException', uncaught);
    graceful().then(
      () => exitAfter && process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', signalled);
  process.on('SIGINT', signalled);
  process.on('unhandledRejection', unhandled);
  return () => {
    process.off('SIGTERM', signalled);
    process.off('SIGINT', signalled);
    process.off('unhandledRejection', unhandled);
    process.off('uncaughtException', uncaught);
  };
}
