/** Waiting, in tests, for something the worker does in its own time. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls fn until it returns a value other than undefined or false, and returns that value. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
