/**
 * Prometheus's binaries for the tests: `promtool` (metric lint, alert-rule tests) and the
 * `prometheus` server, both from Debian's `prometheus` package. A binary on PATH wins; else the
 * package is extracted once (apt-get download, after an apt-get update on a fresh machine, then
 * dpkg-deb -x: nothing is installed system-wide) into a cache shared by every checkout; else the
 * test fails with one line that says how to install it. Never a skip.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';

type Binary = 'promtool' | 'prometheus';

/** $SJ_CACHE_DIR, else $XDG_CACHE_HOME/session-janitor, else ~/.cache/session-janitor. */
export function cacheDir(): string {
  const { SJ_CACHE_DIR, XDG_CACHE_HOME } = process.env;
  if (SJ_CACHE_DIR) return SJ_CACHE_DIR;
  return join(XDG_CACHE_HOME || join(homedir(), '.cache'), 'session-janitor');
}

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, name))
    .find(executable);
}

function run(command: string, args: readonly string[], cwd: string): void {
  execFileSync(command, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 });
}

function firstLine(error: unknown): string {
  const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
  return (stderr || (error instanceof Error ? error.message : String(error))).split('\n')[0] ?? '';
}

/**
 * Extracts Debian's prometheus package into <cache>/prometheus (through a temporary sibling
 * renamed into place, so that two test runs never see half an extraction).
 */
function extractDebianPackage(target: string): void {
  const cache = cacheDir();
  mkdirSync(cache, { recursive: true });
  const work = mkdtempSync(join(cache, 'prometheus-'));
  try {
    try {
      run('apt-get', ['download', 'prometheus'], work);
    } catch {
      // A fresh machine has no package lists yet.
      run('apt-get', ['update', '-qq'], work);
      run('apt-get', ['download', 'prometheus'], work);
    }
    const deb = readdirSync(work).find((file) => file.endsWith('.deb'));
    assert.ok(deb, 'apt-get download prometheus wrote no .deb');
    run('dpkg-deb', ['-x', deb, '.'], work);
    rmSync(join(work, deb));
    try {
      renameSync(work, target);
    } catch (error) {
      // Another run put its extraction there first: use that one.
      if (!executable(join(target, 'usr', 'bin', 'promtool'))) throw error;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function binary(name: Binary): string {
  const found = onPath(name);
  if (found) return found;
  const extracted = join(cacheDir(), 'prometheus');
  const cached = join(extracted, 'usr', 'bin', name);
  if (executable(cached)) return cached;
  try {
    extractDebianPackage(extracted);
  } catch (error) {
    assert.fail(
      `${name} is not on PATH and Debian's prometheus package could not be fetched into ${extracted} (${firstLine(error)}): ` +
        `install Prometheus (\`apt-get install prometheus\`, \`brew install prometheus\`, or the release archive from prometheus.io) so that ${name} is on PATH.`,
    );
  }
  assert.ok(executable(cached), `Debian's prometheus package has no usr/bin/${name}`);
  return cached;
}

/** The promtool executable: the metrics' linter and the alert rules' tests. */
export function promtool(): string {
  return binary('promtool');
}

/** The Prometheus server executable of the same package. */
export function prometheus(): string {
  return binary('prometheus');
}
