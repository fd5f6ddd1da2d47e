/**
 * README's configuration table and src/config.ts name the same variables: a variable the code reads
 * but the table leaves out (or a row for one the code no longer reads) fails here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');

/** The keys of config.ts's VARIABLES: every variable it reads, each through variable(...). */
function variablesOfConfig(): Set<string> {
  const source = read('src/config.ts');
  const block = /^const VARIABLES = \{$([\s\S]*?)^\};?$/m.exec(source)?.[1];
  assert.ok(block, 'src/config.ts has no `const VARIABLES = {` block: this test needs another way to list its variables');
  return new Set([...block.matchAll(/^ {2}([A-Z][A-Z0-9_]*): variable\(/gm)].map((m) => m[1] ?? ''));
}

/** The variables of README's "## Configuration" table: the backticked names of each row's first cell. */
function variablesOfReadme(): Set<string> {
  const section = /^## Configuration$([\s\S]*?)^## /m.exec(read('README.md'))?.[1] ?? '';
  const names = section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...(line.split('|')[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1] ?? ''));
  return new Set(names);
}

test("README's configuration table lists exactly the variables src/config.ts reads", () => {
  const code = variablesOfConfig();
  const readme = variablesOfReadme();
  assert.ok(code.size > 30, `found only ${code.size} variables in src/config.ts`);
  assert.deepEqual([...code].filter((name) => !readme.has(name)).sort(), [], 'read by src/config.ts, missing from the README table');
  assert.deepEqual([...readme].filter((name) => !code.has(name)).sort(), [], 'in the README table, not read by src/config.ts');
});
