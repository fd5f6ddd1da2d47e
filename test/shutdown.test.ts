/**
 * A shutdown that fails must say so with its exit code: Kubernetes and any supervisor take exit 0
 * for a clean stop. Every releaser still runs; the first error is the one reported.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { releaseInReverse, type Releaser } from '../src/worker.ts';
import { silentLogger } from './helpers/database.ts';

test('the releasers all run, last acquired first, and the first error is thrown', async () => {
  const released: string[] = [];
  const releaser = (name: string, error?: Error): Releaser => ({
    name,
    release: async () => {
      released.push(name);
      if (error !== undefined) throw error;
    },
  });
  const first = new Error('pg-boss did not stop');
  const releasers = [releaser('database'), releaser('pool', new Error('pool.end() failed')), releaser('http'), releaser('pg-boss', first)];
  await assert.rejects(releaseInReverse(releasers, silentLogger()), (error) => error === first);
  assert.deepEqual(released, ['pg-boss', 'http', 'pool', 'database']);
});

test('SIGTERM with a releaser that fails: the process exits 1 after releasing the rest', async () => {
  const src = new URL('../src/', import.meta.url).href;
  const script = `
    import { releaseInReverse } from '${src}worker.ts';
    import { onProcessEvents } from '${src}commands/process-edge.ts';
    import { createLogger } from '${src}logger.ts';
    const log = createLogger('info');
    const releasers = [
      { name: 'database', release: async () => console.log('released database') },
      { name: 'pool', release: async () => { throw new Error('pool.end() failed'); } },
      { name: 'http', release: async () => console.log('released http') },
    ];
    onProcessEvents(() => releaseInReverse(releasers, log), log);
    setInterval(() => {}, 60_000);
    console.log('ready');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const ready = new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('ready')) resolve();
    }),
  );
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await ready;
  child.kill('SIGTERM');
  assert.equal(await exited, 1, output);
  assert.match(output, /released http/);
  assert.match(output, /released database/);
  assert.match(output, /pool\.end\(\) failed/);
});
