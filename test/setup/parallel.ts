/**
 * Child processes a few at a time, each one's output kept whole and printed when it ends, so that
 * two files' lines never interleave in a CI log: the runner of `npm test` (a test file a process)
 * and of `npm run test:matrix` (a major a process) share it.
 */
import { spawn } from 'node:child_process';

export interface Job {
  /** What the job's header line names (a file, a major). */
  readonly title: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** A check the others wait on: once one fails, no job after it starts (a type error fails the run in seconds). */
  readonly gate?: boolean;
}

export interface JobResult {
  readonly title: string;
  readonly passed: boolean;
  readonly seconds: number;
  /** node's test runner's closing counts (ℹ tests, ℹ pass, ℹ fail), when it printed them. */
  readonly counts: Readonly<Record<'tests' | 'pass' | 'fail', number>>;
}

/**
 * Runs the jobs in order, at most `slots` at once; slot i runs each of its jobs with envFor(i, job)
 * on top of the job's env (awaited: a slot's server may still be starting). After a gate's failure
 * the jobs not yet started are left out of the results.
 */
export async function runInParallel(
  jobs: readonly Job[],
  slots: number,
  envFor: (slot: number, job: Job) => NodeJS.ProcessEnv | Promise<NodeJS.ProcessEnv>,
): Promise<JobResult[]> {
  const results: JobResult[] = [];
  let next = 0;
  let gateFailed = false;
  const slot = async (index: number): Promise<void> => {
    for (let job = jobs[next++]; job !== undefined && !gateFailed; job = jobs[next++]) {
      const result = await run(job, { ...job.env, ...(await envFor(index, job)) });
      results.push(result);
      if (job.gate && !result.passed) gateFailed = true;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, slots) }, (_, index) => slot(index)));
  return results;
}

async function run(job: Job, env: NodeJS.ProcessEnv): Promise<JobResult> {
  const started = performance.now();
  const chunks: Buffer[] = [];
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, job.args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.once('error', (error) => {
      chunks.push(Buffer.from(`${error.message}\n`));
      resolve(null);
    });
    child.once('close', resolve);
  });
  const output = Buffer.concat(chunks).toString();
  const seconds = (performance.now() - started) / 1000;
  const count = (name: string): number => Number(new RegExp(`^ℹ ${name} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);
  const result: JobResult = { title: job.title, passed: code === 0, seconds, counts: { tests: count('tests'), pass: count('pass'), fail: count('fail') } };
  process.stdout.write(`\n# ${job.title}: ${result.passed ? 'ok' : `FAILED (exit ${code})`} in ${seconds.toFixed(1)} s\n${output}`);
  return result;
}

/** One line of totals, and the jobs that failed. */
export function summary(results: readonly JobResult[], seconds: number): string {
  const sum = (name: 'tests' | 'pass' | 'fail'): number => results.reduce((total, result) => total + result.counts[name], 0);
  const failed = results.filter((result) => !result.passed);
  return [
    `${results.length} processes, ${sum('tests')} tests: ${sum('pass')} pass, ${sum('fail')} fail, in ${Math.round(seconds)} s`,
    ...failed.map((result) => `FAILED: ${result.title}`),
  ].join('\n');
}
