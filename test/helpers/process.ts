/**
 * Runs the CLI as a child process, the way an operator or Kubernetes runs it, with a clean
 * environment (only what the test passes, plus PATH). Every child still running when its test file
 * ends is killed by an after-hook, whatever the tests' outcome: a failed or timed-out test must fail
 * the run, not hang it on a worker left running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

export interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Running {
  readonly child: ChildProcess;
  /** Everything written so far. */
  output(): string;
  /** Resolves once the output contains the text (rejects after timeoutMs). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  readonly finished: Promise<Finished>;
}

/** Each child still running, and whether it leads a process group of its own. */
const running = new Map<ChildProcess, boolean>();

after(() => {
  for (const [child, detached] of running) {
    if (detached && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    else child.kill('SIGKILL');
  }
});

export interface RunOptions {
  /** A process group of its own, as a terminal gives a command: signal it with process.kill(-pid). */
  readonly detached?: boolean;
  /** Another checkout's cli.ts (an earlier release's, tests/releases.test.ts); this one's by default. */
  readonly cli?: string;
}

/** The test run's compile cache (test/run.ts), for the CLI's processes too: the environment is otherwise the test's own. */
const compileCache = process.env.NODE_COMPILE_CACHE ? { NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE } : {};

export function runCli(args: readonly string[], env: Record<string, string>, options: RunOptions = {}): Running {
  const child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
    // The blast-radius guard off (test/helpers/database.ts testConfig says why), for this checkout's CLI only.
    env: { PATH: process.env.PATH ?? '', ...compileCache, ...(options.cli === undefined ? { JANITOR_BLAST_RADIUS: 'off' } : {}), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  running.set(child, options.detached ?? false);
  child.once('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    notify();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    notify();
  });
  const finished = new Promise<Finished>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const output = () => stdout + stderr;
  return {
    child,
    output,
    finished,
    waitFor: (text, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const matches = () => (typeof text === 'string' ? output().includes(text) : text.test(output()));
        if (matches()) return resolve();
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for ${String(text)}; output so far:\n${output()}`));
        }, timeoutMs);
        const check = () => {
          if (matches()) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve();
          }
        };
        waiters.add(check);
        void finished.then(() => {
          if (!matches()) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`the process exited before printing ${String(text)}; output:\n${output()}`));
          }
        });
      }),
  };
}
