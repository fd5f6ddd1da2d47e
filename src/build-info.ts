/**
 * Which release is running: the version (package.json, which the image ships), the git revision,
 * and the versions of pg-boss and Node.js beside it. `--version`, the first log line of every
 * command and session_janitor_build_info all read this one object, so they cannot disagree.
 *
 * Where the revision comes from:
 * - in the image: dist/REVISION, written by the Dockerfile's build stage from the build argument
 *   REVISION (the image has no .git); the same argument sets the org.opencontainers.image.revision
 *   label;
 * - in a checkout (npm start, the tests, a fresh clone): `git rev-parse HEAD` in the checkout;
 * - elsewhere (no git, no file): `unknown`.
 * No environment variable is read: a revision is a fact of the build, not a setting.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export interface BuildInfo {
  /** package.json's version, such as 0.2.0. */
  readonly version: string;
  /** The full git commit hash, or `unknown`. */
  readonly revision: string;
  readonly pgbossVersion: string;
  /** pg-boss's schema version, which the `pgboss` schema's version table must hold. */
  readonly pgbossSchemaVersion: number;
  readonly nodeVersion: string;
}

/** The package root: src/.. in a checkout, dist/.. in the image. */
const ROOT = new URL('../', import.meta.url);
const REVISION_FILE = new URL('REVISION', import.meta.url);

const packageJson = z.object({ version: z.string().min(1) });
const pgbossPackageJson = z.object({ version: z.string().min(1), pgboss: z.object({ schema: z.number().int().positive() }) });
/** A full or abbreviated commit hash. */
const REVISION = /^[0-9a-f]{7,64}$/;

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= Object.freeze({
    version: packageJson.parse(JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8'))).version,
    revision: readRevision(),
    ...pgboss(),
    nodeVersion: process.versions.node,
  });
  return cached;
}

/** What `--version` prints and the first log line says. */
export function describeBuild(info: BuildInfo = buildInfo()): string {
  return `session-janitor ${info.version} (revision ${info.revision}, pg-boss ${info.pgbossVersion}, Node.js ${info.nodeVersion})`;
}

function pgboss(): { pgbossVersion: string; pgbossSchemaVersion: number } {
  // pg-boss's package.json names the schema version its code needs (the one its check compares).
  const path = createRequire(import.meta.url).resolve('pg-boss/package.json');
  const parsed = pgbossPackageJson.parse(JSON.parse(readFileSync(path, 'utf8')));
  return { pgbossVersion: parsed.version, pgbossSchemaVersion: parsed.pgboss.schema };
}

function readRevision(): string {
  const fromFile = readText(REVISION_FILE);
  if (fromFile !== undefined && REVISION.test(fromFile)) return fromFile;
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: fileURLToPath(ROOT),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
    }).trim();
    return REVISION.test(head) ? head : 'unknown';
  } catch {
    return 'unknown';
  }
}

function readText(url: URL): string | undefined {
  try {
    return readFileSync(url, 'utf8').trim();
  } catch {
    return undefined;
  }
}
