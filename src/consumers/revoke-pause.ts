/**
 * Revocations obey `session-janitor pause revoke` (by their own name only: `all` never includes
 * them, tasks/pause.ts says why). While they are paused this replica takes no revocation job: pg-boss
 * stops its revoke workers (offWork, which lets a revocation in flight finish), so the queued jobs
 * wait in the queue, spending no retry and no expiry; when the pause ends (by itself or `resume`)
 * the workers start again. A replica that cannot read the pause keeps what it was doing.
 */
import type { PgBoss } from 'pg-boss';
import type { Logger } from '../logger.ts';
import { QUEUES } from '../queues.ts';
import type { TaskContext } from '../tasks/context.ts';
import { taskPaused } from '../tasks/pause.ts';
import { registerRevokeConsumer } from './revoke.ts';

/**
 * How often a replica reads the revocations' pause: every replica stops taking revocations within
 * 2 s of `pause revoke`, for one primary-key lookup every 2 s (the consumer itself polls every 0.5 s).
 */
export const REVOKE_PAUSE_CHECK_MS = 2000;

/** Starts the revoke consumer unless revocations are paused, and follows their pause; returns its stop. */
export async function consumeRevocationsUnlessPaused(boss: PgBoss, ctx: TaskContext, shutdown: AbortSignal, log: Logger): Promise<() => Promise<void>> {
  let working = false;
  const follow = async (paused: boolean) => {
    if (shutdown.aborted) return;
    if (paused && working) {
      working = false;
      await boss.offWork(QUEUES.revoke);
      log.warn({ queue: QUEUES.revoke }, 'revocations paused (session-janitor pause revoke): this replica takes no revocation job until the pause ends');
    } else if (!paused && !working) {
      working = true;
      await registerRevokeConsumer(boss, ctx, shutdown, log);
    }
  };
  const wasPaused = await taskPaused(ctx.pool, 'revoke').catch(() => false);
  await follow(wasPaused);
  if (wasPaused)
    log.warn({ queue: QUEUES.revoke }, 'revocations are paused (session-janitor status says by whom, why and until when): none is taken until the pause ends');

  let checking: Promise<void> = Promise.resolve();
  const check = async () => {
    const paused = await taskPaused(ctx.pool, 'revoke');
    const resumed = !paused && !working;
    await follow(paused);
    if (resumed) log.info({ queue: QUEUES.revoke }, 'revocations resumed: this replica takes revocation jobs again');
  };
  const timer = setInterval(() => {
    checking = checking
      .then(check)
      .catch((error: unknown) => log.debug({ err: error }, "could not read the revocations' pause; this replica keeps what it was doing"));
  }, REVOKE_PAUSE_CHECK_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await checking;
  };
}
