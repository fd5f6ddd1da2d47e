/**
 * Releases as git and CHANGELOG.md know them (CHANGELOG.md says how): a heading `## X.Y.Z` is a
 * release; its commit is the tag vX.Y.Z where the clone has it, else the first commit whose
 * CHANGELOG.md has the heading. Nothing is skipped when history is missing: the caller fails, saying why.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const git = (...args: string[]): string => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

const parts = (v: string): number[] => v.split('.').map(Number);

/** a < b, as versions X.Y.Z. */
export function versionBelow(a: string, b: string): boolean {
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0);
  return false;
}

/** The releases CHANGELOG.md lists, newest first. */
export function listedReleases(): string[] {
  const changelog = readFileSync(`${ROOT}CHANGELOG.md`, 'utf8');
  return [...changelog.matchAll(/^## (\d+\.\d+\.\d+)\b/gm)].map((m) => m[1] ?? '').sort((a, b) => (versionBelow(a, b) ? 1 : -1));
}

export function releaseCommit(version: string): string {
  // In a shallow clone the oldest commit present seems to add every heading: the check would compare
  // the files with themselves and pass whatever changed.
  let shallow: string;
  try {
    shallow = git('rev-parse', '--is-shallow-repository');
  } catch (error) {
    assert.fail(`cannot read git history (is this a git clone, with git on PATH?): ${String(error)}`);
  }
  assert.equal(shallow, 'false', `this clone is shallow: releases are checked against git history (git fetch --unshallow --tags)`);
  try {
    return git('rev-parse', '--verify', '--quiet', `refs/tags/v${version}^{commit}`);
  } catch {
    // No such tag in this clone: the heading's first commit.
  }
  let first = '';
  try {
    first = git('log', '--format=%H', '--reverse', '-S', `## ${version}`, '--', 'CHANGELOG.md').split('\n')[0] ?? '';
  } catch (error) {
    assert.fail(`cannot read git history (is this a git clone, with git on PATH?): ${String(error)}`);
  }
  assert.ok(
    first !== '',
    `release ${version} is in CHANGELOG.md, but there is no tag v${version} and no commit of this clone's history adds its heading: a shallow clone? (git fetch --unshallow --tags)`,
  );
  return first;
}
