/**
 * docs/runbook.md, "Incidents: pause, check, resume": every `node dist/cli.js ...` command of the
 * section, in the order printed, run as the CLI on a real database (the shell parses its quoting,
 * as it would in the pod), and what each should show.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { useTestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';

const RUNBOOK = readFileSync(new URL('../docs/runbook.md', import.meta.url), 'utf8');
const SECTION = /^## Incidents: pause, check, resume or confirm$([\s\S]*?)^## /m.exec(RUNBOOK)?.[1] ?? '';
const COMMANDS = [...SECTION.matchAll(/^\s*kubectl -n "\$NS" exec deploy\/session-janitor -- node dist\/cli\.js (.+)$/gm)].map((m) => m[1] ?? '');

/** The arguments sh makes of a command line's quoting. */
async function shellWords(line: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('sh', ['-c', `printf '%s\\0' ${line}`]);
  return stdout.split('\0').slice(0, -1);
}

const db = useTestDatabase();

test('the incident steps pause, check, resume and renew, in the order printed', { timeout: 60_000 }, async () => {
  assert.deepEqual(
    COMMANDS.map((c) => c.split(' ')[0]),
    ['pause', 'status', 'resume', 'pause', 'confirm'],
  );
  const expected = [
    /^paused purge-expired until .*: INC-123: replica lag\npaused reap-idle until .*: INC-123: replica lag\n$/,
    /^purge-expired\s+\S+\s+\S+\s+\S+\s+0\s+INC-123: replica lag$/m,
    /^resumed purge-expired .*\nresumed reap-idle .*\n$/,
    /^paused purge-expired until \S+ \(since \S+, by \S+, renewals 0\): INC-123: still lagging\n$/,
    // Nothing was stopped here: the guard's stop and its confirmation are test/blast-guard.test.ts's.
    /^reap-idle has no blast-radius stop to confirm\n$/,
  ];
  for (const [i, command] of COMMANDS.entries()) {
    const result = await runCli(await shellWords(command), { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
    assert.equal(result.code, 0, `${command}: ${result.stderr}`);
    assert.match(result.stdout, expected[i] ?? /^$/, command);
  }
});
