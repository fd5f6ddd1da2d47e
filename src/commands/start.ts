/** `session-janitor start` (the default, `npm start`): the worker until SIGTERM. */
import { safeErrorMessage } from '../db/errors.ts';
import { startWorker } from '../main.ts';
import { onSignals, setup } from './common.ts';

export async function startCommand(): Promise<void> {
  const { config, log } = setup('stdout');
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: { message: safeErrorMessage(reason) } }, 'unhandled rejection');
    process.exit(1);
  });
  // Signals are handled from the first moment: a Ctrl-C during start-up stops the worker gracefully
  // once it has started, instead of killing it half-way.
  const starting = startWorker(config, log);
  onSignals(async () => (await starting).stop(), log);
  await starting;
}
