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
  const worker = await startWorker(config, log);
  onSignals(() => worker.stop(), log);
}
