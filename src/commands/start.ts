/** `session-janitor start` (the default, `npm start`): the worker until SIGTERM. */
import { startWorker } from '../worker.ts';
import { setup } from './common.ts';
import { onProcessEvents } from './process-edge.ts';

export async function startCommand(): Promise<void> {
  const { config, log } = setup('stdout');
  // Signals are handled from the first moment: a Ctrl-C during start-up stops the worker gracefully
  // once it has started, instead of killing it half-way.
  const starting = startWorker(config, log);
  onProcessEvents(async () => (await starting).stop(), log);
  await starting;
}
