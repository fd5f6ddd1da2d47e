/** `session-janitor start` (the default, `npm start`): the worker until SIGTERM. */
import { startTracing } from '../tracing.ts';
import { startWorker } from '../worker.ts';
import { setup } from './common.ts';
import { onProcessEvents } from './process-edge.ts';

export async function startCommand(): Promise<void> {
  const { config, log } = setup('stdout');
  // Before the worker, so that pg-boss finds the tracer provider; loads nothing when tracing is off.
  const tracing = await startTracing(config.tracing);
  if (config.tracing.enabled) log.info({ exporter: config.tracing.exporter }, 'OpenTelemetry tracing on (OTEL_* variables)');
  // Signals are handled from the first moment: a Ctrl-C during start-up stops the worker gracefully
  // once it has started, instead of killing it half-way.
  const starting = startWorker(config, log);
  onProcessEvents(async () => {
    await (await starting).stop();
    await tracing.stop();
  }, log);
  await starting;
}
