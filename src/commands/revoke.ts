/**
 * `session-janitor revoke`: enqueue a RevokeRequest on `refresh-session.revoke`, through
 * session_janitor.enqueue_revocation (so `migrate` must have run), and with --wait wait for the
 * worker to carry it out.
 *
 *   session-janitor revoke --user 42 [--except JTI] --reason password-changed
 *   session-janitor revoke --users-file ids.txt --reason compromised --requested-by alice --wait
 *   session-janitor revoke --jti UUID [UUID...] --reason admin
 *   session-janitor revoke --issued-before 2026-11-28T12:00:00Z [--user 42] --reason key-rotated
 *
 * The request is validated as the worker validates it; an invalid one is refused here (exit 64,
 * EX_USAGE) with every issue listed. With --wait: exit 75 (EX_TEMPFAIL) when no worker took the job
 * within --take-timeout (it stays queued: nothing failed, a worker will run it), exit 1 when the
 * job fails or is still running at --wait-timeout.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InvalidRevokeRequestError, RevocationFailedError, RevocationTimeoutError, enqueueRevocation, waitForRevocation } from '../client.ts';
import { openDatabase } from '../db/database.ts';
import { SQLSTATE, safeErrorMessage, sqlState } from '../db/errors.ts';
import { selectorKind, validateRevokeRequest } from '../revoke-request.ts';
import { setup } from './common.ts';
import { fail } from './process-edge.ts';
import { commandLine } from '../command-line.ts';

export const EXIT_USAGE = 64;
/** --wait: no worker took the job within --take-timeout (EX_TEMPFAIL: it runs when one starts). */
export const EXIT_NOT_TAKEN = 75;

export interface RevokeCommandOptions {
  readonly user?: string;
  readonly except?: string;
  readonly usersFile?: string;
  readonly jti?: string[];
  readonly issuedBefore?: string;
  readonly reason?: string;
  readonly requestedBy?: string;
  readonly dedupeKey?: string;
  readonly wait?: boolean;
  readonly waitTimeout?: string;
  readonly takeTimeout?: string;
}

export function registerRevokeCommand(program: Command): void {
  program
    .command('revoke')
    .description(
      'enqueue a revocation (a RevokeRequest) for the workers; exactly one of --user, --users-file, --jti, --issued-before (--user may go with --except or --issued-before)',
    )
    .option('--user <id>', 'every session of this user id')
    .option('--except <jti>', 'with --user: keep this one session ("sign out my other devices")')
    .option('--users-file <file>', 'every session of each user id in FILE (one per line, # comments; or a JSON array)')
    .option('--jti <uuid...>', 'exactly these sessions')
    .option('--issued-before <instant>', 'every session created before this ISO-8601 instant with offset, e.g. 2026-11-28T12:00:00Z')
    .option('--reason <text>', 'required: why, for the audit log (1 to 200 characters), e.g. password-changed, admin, compromised')
    .option('--requested-by <text>', 'who asks, for the audit log (up to 200 characters)')
    .option('--dedupe-key <key>', 'drop this request if one with the same key was enqueued already')
    .option('--wait', 'wait until the worker has carried it out, then print how many sessions went')
    .option('--wait-timeout <seconds>', 'with --wait: give up after this many seconds', '300')
    .option('--take-timeout <seconds>', 'with --wait: give up (exit 75) when no worker has taken the job after this many seconds', '30')
    .action(revokeCommand);
}

export async function revokeCommand(options: RevokeCommandOptions): Promise<void> {
  const { config, log } = setup();
  const seconds = (option: string, value: string | undefined, fallback: number) => {
    const parsed = Number(value ?? fallback);
    if (!Number.isFinite(parsed) || parsed <= 0) fail(`${option} must be a positive number of seconds, not ${JSON.stringify(value)}`, EXIT_USAGE);
    return parsed;
  };
  const waitTimeoutSeconds = seconds('--wait-timeout', options.waitTimeout, 300);
  const takeTimeoutSeconds = Math.min(seconds('--take-timeout', options.takeTimeout, 30), waitTimeoutSeconds);
  const request = await buildRequest(options);
  const validation = validateRevokeRequest(request);
  if (!validation.ok) {
    fail(`invalid revocation request:\n${validation.issues.map((i) => `  - ${i.message}`).join('\n')}`, EXIT_USAGE);
  }
  const database = await openDatabase(config, log);
  try {
    const singletonKey = options.dedupeKey;
    let id: string | null;
    try {
      id = await enqueueRevocation(database.connectionString, validation.request, singletonKey === undefined ? {} : { singletonKey });
    } catch (error) {
      if (error instanceof InvalidRevokeRequestError) fail(error.message, EXIT_USAGE);
      const code = sqlState(error);
      // What only the database can judge (an issuedBefore past its now(), a request too big) is
      // still an invalid request: nothing was enqueued.
      if (code === SQLSTATE.invalidParameterValue || code === SQLSTATE.programLimitExceeded) {
        fail(`invalid revocation request:\n  - ${error instanceof Error ? error.message : String(error)}`, EXIT_USAGE);
      }
      if (code === SQLSTATE.insufficientPrivilege) {
        const role = selectorKind(validation.request) === 'issuedBefore' ? 'session_janitor_global_revoker' : 'session_janitor_producer';
        fail(`${safeErrorMessage(error)}: this request needs the role ${role} of sql/roles.sql (docs/deployment.md, Database roles)`, 1);
      }
      if (code === '42883' || code === '3F000' || code === SQLSTATE.undefinedTable) {
        fail(`session_janitor.enqueue_revocation is missing: run \`${commandLine('migrate')}\` first`, 1);
      }
      throw error;
    }
    if (id === null) {
      process.stdout.write(`nothing enqueued: a revocation with dedupe key ${JSON.stringify(singletonKey)} was enqueued already\n`);
      return;
    }
    process.stdout.write(`enqueued revocation job ${id}\n`);
    if (!options.wait) return;
    process.stderr.write(
      `waiting for a worker to carry out revocation job ${id} (for a worker to take it: up to ${takeTimeoutSeconds} s; to finish: up to ${waitTimeoutSeconds} s)\n`,
    );
    const wait = (timeoutMs: number) => waitForRevocation(database.connectionString, id, { timeoutMs });
    try {
      // First until a worker takes the job; a job still 'created' then has no worker to run it.
      const output = await wait(takeTimeoutSeconds * 1000).catch((error: unknown) => {
        if (!(error instanceof RevocationTimeoutError)) throw error;
        if (error.state === 'created' || error.state === 'retry') {
          fail(
            `no worker has taken the job in ${takeTimeoutSeconds} s; it stays queued and runs when a worker starts (\`status\` shows the queue)`,
            EXIT_NOT_TAKEN,
          );
        }
        return wait((waitTimeoutSeconds - takeTimeoutSeconds) * 1000);
      });
      process.stdout.write(`revoked ${output.revoked} sessions\n`);
    } catch (error) {
      if (error instanceof RevocationFailedError) fail(error.message, 1);
      if (error instanceof RevocationTimeoutError) {
        fail(`revocation job ${id} is still ${error.state} after ${waitTimeoutSeconds} s; the worker carries on with it (\`status\` shows the queue)`, 1);
      }
      throw error;
    }
  } finally {
    await database.close();
  }
}

/** The request as the options give it; validation comes after (numbers stay strings if not numbers). */
async function buildRequest(options: RevokeCommandOptions): Promise<Record<string, unknown>> {
  const request: Record<string, unknown> = {};
  if (options.reason !== undefined) request.reason = options.reason;
  if (options.requestedBy !== undefined) request.requestedBy = options.requestedBy;
  if (options.user !== undefined) request.userId = toNumber(options.user);
  if (options.except !== undefined) request.exceptJti = options.except;
  if (options.usersFile !== undefined) request.userIds = await readUserIds(options.usersFile);
  if (options.jti !== undefined) request.jtis = options.jti;
  if (options.issuedBefore !== undefined) request.issuedBefore = options.issuedBefore;
  return request;
}

const toNumber = (text: string): number | string => (/^\s*-?\d+\s*$/.test(text) ? Number(text) : text);

/** One user id per line (blank lines and # comments ignored, commas allowed), or a JSON array. */
async function readUserIds(file: string): Promise<unknown[]> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch (error) {
    fail(`cannot read --users-file ${file}: ${error instanceof Error ? error.message : String(error)}`, EXIT_USAGE);
  }
  if (content.trimStart().startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(content);
      if (Array.isArray(parsed)) return parsed as unknown[];
    } catch {
      // reported below
    }
    fail(`--users-file ${file} starts with [ but is not a JSON array`, EXIT_USAGE);
  }
  const ids: unknown[] = [];
  content.split('\n').forEach((line, index) => {
    for (const token of line.replace(/#.*/, '').split(/[\s,]+/)) {
      if (token === '') continue;
      if (!/^-?\d+$/.test(token)) fail(`--users-file ${file}:${index + 1}: ${JSON.stringify(token.slice(0, 40))} is not a user id`, EXIT_USAGE);
      ids.push(Number(token));
    }
  });
  return ids;
}
