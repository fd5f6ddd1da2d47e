/**
 * `session-janitor dev-url`: the DATABASE_URL of the embedded development PostgreSQL that a running
 * `npm start` of this checkout serves, for psql or a producer (`psql "$(npx session-janitor dev-url)"`).
 * It prints the local development password, which is its purpose; it never starts a server.
 */
import { embeddedUrl } from '../db/embedded.ts';
import { setup } from './common.ts';
import { fail } from './process-edge.ts';

export async function devUrlCommand(): Promise<void> {
  const { config } = setup();
  if (config.databaseUrl !== undefined) fail('DATABASE_URL is set: the worker uses that database, not the embedded one', 1);
  const url = await embeddedUrl(config.dataDir);
  if (url === undefined) fail(`no embedded PostgreSQL is running under ${config.dataDir}: start one with \`npm start\``, 1);
  process.stdout.write(`${url}\n`);
}
