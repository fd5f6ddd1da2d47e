/** Connections and the fresh copy of the template that each case runs on. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export function databaseUrlFor(adminUrl: string, database: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'sj-bench' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface CaseDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

/**
 * A fresh copy of the template, its table and indexes loaded into shared_buffers (pg_prewarm, when
 * the server has it), then a CHECKPOINT: every case starts from the same state, pays the same
 * full-page images and reads nothing from disk.
 */
export async function copyOfTemplate(adminUrl: string, template: string): Promise<CaseDatabase> {
  const name = `sj_bench_${randomBytes(4).toString('hex')}`;
  await withClient(adminUrl, async (admin) => {
    try {
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template} STRATEGY FILE_COPY`);
    } catch {
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    }
  });
  const url = databaseUrlFor(adminUrl, name);
  await withClient(url, async (client) => {
    const { rows } = await client.query<{ present: boolean }>(`SELECT count(*) > 0 AS present FROM pg_extension WHERE extname = 'pg_prewarm'`);
    if (rows[0]?.present) {
      await client.query(
        `SELECT pg_prewarm(c.oid) FROM pg_class c
          WHERE c.oid = 'auth.refresh_session'::regclass
             OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'auth.refresh_session'::regclass)
             OR c.oid = 'auth."user"'::regclass`,
      );
    } else {
      await client.query('SELECT count(*) FROM auth.refresh_session');
    }
    await client.query('CHECKPOINT');
  });
  return {
    name,
    url,
    drop: () => withClient(adminUrl, async (admin) => void (await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))),
  };
}

/** The server's current WAL insert position, as bytes since 0/0. */
export async function walPosition(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ lsn: string }>(`SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text AS lsn`);
  return Number(rows[0]?.lsn ?? Number.NaN);
}
