/** Forks the purge and workload child processes and speaks their protocol. */
import { fork, type ChildProcess } from 'node:child_process';
import type { ChildResult, WorkloadMessage, WorkloadSample } from './protocol.ts';

/** The parent's environment without the worker's own variables: each case sets its JANITOR_*. */
function childEnv(url: string, env: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('JANITOR_') && key !== 'DATABASE_URL'));
  return { ...base, ...env, SJ_BENCH_URL: url };
}

function nextMessage<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T) => {
      child.off('exit', onExit);
      resolve(message);
    };
    const onExit = (code: number | null) => {
      child.off('message', onMessage);
      reject(new Error(`${what} exited (code ${code}) before answering`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
  });
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));

export type PurgeRun = Extract<ChildResult, { type: 'result' }>;

export interface PurgeChild {
  /** Starts the run (the child's pool is connected by then) and resolves with its result. */
  run(request?: unknown): Promise<PurgeRun>;
  kill(): void;
}

/** Forks purge-child.ts and resolves once its pool is warm. */
export async function forkPurge(url: string, env: Readonly<Record<string, string>>): Promise<PurgeChild> {
  const child = fork(new URL('./purge-child.ts', import.meta.url), [], {
    env: childEnv(url, env),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  await nextMessage<{ type: 'ready' }>(child, 'the purge child');
  return {
    run: async (request?: unknown) => {
      const answer = nextMessage<ChildResult>(child, 'the purge child');
      child.send({ type: 'run', request });
      const result = await answer;
      await exited(child);
      if (result.type === 'error') throw new Error(`the purge failed: ${result.message}`);
      return result;
    },
    kill: () => void child.kill(),
  };
}

export interface Workload {
  readonly jtis: number;
  stop(): Promise<{ samples: readonly WorkloadSample[]; lateStarts: number }>;
  kill(): void;
}

/** A rate that rises and falls (workload-child.ts): low to high and back every periodSeconds. */
export interface RateProfile {
  readonly low: number;
  readonly high: number;
  readonly periodSeconds: number;
}

export async function startWorkload(url: string, rate: number, clients: number, profile?: RateProfile): Promise<Workload> {
  const child = fork(new URL('./workload-child.ts', import.meta.url), [], {
    env: childEnv(url, {
      SJ_BENCH_WORKLOAD_RATE: String(rate),
      SJ_BENCH_WORKLOAD_CLIENTS: String(clients),
      ...(profile ? { SJ_BENCH_WORKLOAD_PROFILE: JSON.stringify(profile) } : {}),
    }),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  const ready = await nextMessage<WorkloadMessage>(child, 'the workload');
  return {
    jtis: ready.type === 'ready' ? ready.jtis : 0,
    stop: async () => {
      const answer = nextMessage<WorkloadMessage>(child, 'the workload');
      child.send({ type: 'stop' });
      const message = await answer;
      await exited(child);
      if (message.type !== 'samples') throw new Error('the workload answered out of turn');
      return { samples: message.samples, lateStarts: message.lateStarts };
    },
    kill: () => void child.kill(),
  };
}
