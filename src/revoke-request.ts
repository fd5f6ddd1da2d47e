/**
 * RevokeRequest (version 1), the payload of the `refresh-session.revoke` queue (docs/CONTRACT.md):
 * the ONE schema, used by the worker on every job, by the Node client before it sends, and by the
 * `revoke` command. Nothing here does I/O, so the client entry point can import it cheaply.
 *
 * Strict: unknown fields are rejected. Exactly one selector:
 *   userId | userId + exceptJti | userIds | jtis | issuedBefore | userId + issuedBefore
 * and always `reason` (1..200 characters), optionally `requestedBy` (up to 200).
 *
 * Every issue names its field: `{ path: "userIds[3]", message: "userIds[3] must be a positive 32-bit
 * integer" }`; issues about the request as a whole have the path "".
 */
import { z } from 'zod';

/** Most user ids or jtis in one request. */
export const MAX_IDS = 100_000;
/** Longest reason and requestedBy, in characters. */
export const MAX_TEXT = 200;
const INT32_MAX = 2_147_483_647;
/** A dead-letter output stays small: at most this many issues, the last one counting the rest. */
const MAX_ISSUES = 20;

const SELECTORS = ['userId', 'userIds', 'jtis', 'issuedBefore'] as const;

interface RequestCommon {
  /** Why, for the audit log: e.g. "password-changed", "admin", "compromised". 1..200 characters. */
  reason: string;
  /** Who asked, for the audit log. Up to 200 characters. */
  requestedBy?: string;
}

/** The six selector shapes of the contract; `never` keeps the others out at compile time. */
export type RevokeSelector =
  | { userId: number; exceptJti?: string; issuedBefore?: never; userIds?: never; jtis?: never }
  | { userId: number; issuedBefore: string; exceptJti?: never; userIds?: never; jtis?: never }
  | { userIds: number[]; userId?: never; exceptJti?: never; jtis?: never; issuedBefore?: never }
  | { jtis: string[]; userId?: never; exceptJti?: never; userIds?: never; issuedBefore?: never }
  | { issuedBefore: string; userId?: never; exceptJti?: never; userIds?: never; jtis?: never };

export type RevokeRequest = RevokeSelector & RequestCommon;

/** The selector of a valid request, for logs and metrics-free audit lines. */
export type SelectorKind = 'userId' | 'userId+exceptJti' | 'userId+issuedBefore' | 'userIds' | 'jtis' | 'issuedBefore';

export interface RevokeIssue {
  readonly path: string;
  readonly message: string;
}

export type RevokeValidation = { ok: true; request: RevokeRequest } | { ok: false; issues: RevokeIssue[] };

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The requirement each field states in its messages (the path is put in front of it). */
const NEEDS = {
  userId: 'must be a positive 32-bit integer (1 to 2147483647)',
  uuid: 'must be a UUID (8-4-4-4-12 hexadecimal digits)',
  instant: 'must be an ISO-8601 instant with a time zone offset within ±15:59, e.g. 2026-11-28T12:00:00Z or 2026-11-28T13:00:00+01:00',
  userIds: `must be an array of 1 to ${MAX_IDS} user ids`,
  jtis: `must be an array of 1 to ${MAX_IDS} UUIDs`,
  reason: `must be a string of 1 to ${MAX_TEXT} characters`,
  requestedBy: `must be a string of at most ${MAX_TEXT} characters`,
  storable: 'must not contain NUL characters (\\u0000) or unpaired UTF-16 surrogates, which PostgreSQL cannot store',
} as const;

/** Longest issuedBefore: far beyond any real instant, far below what PostgreSQL refuses (about 150). */
const MAX_INSTANT = 64;

const requirement =
  (need: string, requiredField = false) =>
  (issue: { input?: unknown }) =>
    requiredField && issue.input === undefined ? `is required and ${need}` : need;

const userId = z
  .number({ error: requirement(NEEDS.userId) })
  .int({ error: NEEDS.userId })
  .min(1, { error: NEEDS.userId })
  .max(INT32_MAX, { error: NEEDS.userId });

const uuid = z.guid({ error: requirement(NEEDS.uuid) });

/** An offset's hours: PostgreSQL refuses more than 15 (22009), ISO-8601 and zod allow up to 23. */
const OFFSET_HOURS = /[+-](\d\d):\d\d$/;
const MAX_OFFSET_HOURS = 15;

/**
 * What PostgreSQL refuses and the ISO format allows fails here, as invalid_payload, rather than in
 * the worker's DELETE, where the job was retried as if the failure were transient: year 0 (which
 * JavaScript's Date and ISO-8601 accept), a fraction of about 124 digits (22007: at most
 * MAX_INSTANT characters) and an offset beyond ±15:59 (22009). test/instants.test.ts checks on the
 * real server that PostgreSQL accepts every instant accepted here.
 */
const instant = z.iso
  .datetime({ offset: true, error: requirement(NEEDS.instant) })
  .refine(
    (text) =>
      text.length <= MAX_INSTANT &&
      !text.startsWith('0000') &&
      Number(OFFSET_HOURS.exec(text)?.[1] ?? 0) <= MAX_OFFSET_HOURS &&
      Number.isFinite(Date.parse(text)),
    { error: NEEDS.instant },
  );

const text = (min: number, need: string, requiredField: boolean) =>
  z
    .string({ error: requirement(need, requiredField) })
    .min(min, { error: need })
    .max(MAX_TEXT, { error: need })
    // jsonb refuses both: such a request could never be enqueued (the SQL call fails), so the
    // client says so with the field's name rather than with a database error after a round trip.
    .refine((value) => !value.includes('\u0000') && value.isWellFormed(), { error: NEEDS.storable });

const fields = z.strictObject({
  userId: userId.optional(),
  exceptJti: uuid.optional(),
  userIds: z.array(userId, { error: NEEDS.userIds }).min(1, { error: NEEDS.userIds }).max(MAX_IDS, { error: NEEDS.userIds }).optional(),
  jtis: z.array(uuid, { error: NEEDS.jtis }).min(1, { error: NEEDS.jtis }).max(MAX_IDS, { error: NEEDS.jtis }).optional(),
  issuedBefore: instant.optional(),
  reason: text(1, NEEDS.reason, true),
  requestedBy: text(0, NEEDS.requestedBy, false).optional(),
});

type Fields = z.infer<typeof fields>;

const SELECTOR_RULE = 'userId (alone, with exceptJti or with issuedBefore), userIds, jtis or issuedBefore';

/**
 * The selector rule, by the presence of the fields (not their values), so it is reported beside
 * the fields' own issues rather than only once they are fixed.
 */
function checkSelector(value: Record<string, unknown>): RevokeIssue[] {
  const present = SELECTORS.filter((key) => value[key] !== undefined);
  const hasExcept = value.exceptJti !== undefined;
  if (present.length === 0) {
    return [{ path: '', message: `a selector is required: one of ${SELECTOR_RULE}` }];
  }
  const userAndBefore = present.length === 2 && present.includes('userId') && present.includes('issuedBefore');
  if (present.length > 1 && !userAndBefore) {
    return [{ path: '', message: `${present.join(' and ')} cannot be combined: exactly one selector, ${SELECTOR_RULE}` }];
  }
  if (hasExcept && !(present.length === 1 && present[0] === 'userId')) {
    return [{ path: 'exceptJti', message: `exceptJti goes only with userId alone, not with ${present.join(' and ')}` }];
  }
  return [];
}

/**
 * The one schema: the strict fields, the selector rule, and the result narrowed to RevokeRequest.
 * zod skips the refinement after some field issues (an aborting one such as a non-integer) even
 * with `when`, so validateRevokeRequest adds the selector issues itself too (deduplicated): every
 * problem is reported at once.
 */
export const revokeRequestSchema = fields
  .superRefine(
    (value, ctx) => {
      for (const issue of checkSelector(value)) {
        ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path === '' ? [] : [issue.path] });
      }
    },
    { when: (payload) => isRecord(payload.value) },
  )
  .transform(toRequest);

/** Builds the union from the flat fields; only called once checkSelector found no issue. */
function toRequest(value: Fields): RevokeRequest {
  const common: RequestCommon = { reason: value.reason, ...(value.requestedBy === undefined ? {} : { requestedBy: value.requestedBy }) };
  if (value.userIds !== undefined) return { userIds: value.userIds, ...common };
  if (value.jtis !== undefined) return { jtis: value.jtis, ...common };
  if (value.userId !== undefined) {
    if (value.issuedBefore !== undefined) return { userId: value.userId, issuedBefore: value.issuedBefore, ...common };
    return { userId: value.userId, ...(value.exceptJti === undefined ? {} : { exceptJti: value.exceptJti }), ...common };
  }
  if (value.issuedBefore !== undefined) return { issuedBefore: value.issuedBefore, ...common };
  throw new Error('unreachable: a request without a selector passed validation');
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join('');
}

function toIssues(error: z.ZodError, data: unknown): RevokeIssue[] {
  const issues: RevokeIssue[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.push({ path: key, message: `${key} is not a field of a RevokeRequest (unknown fields are rejected)` });
      continue;
    }
    const path = formatPath(issue.path);
    if (path === '') {
      const message = issue.code === 'invalid_type' ? 'the request must be a JSON object' : issue.message;
      issues.push({ path, message });
    } else {
      issues.push({ path, message: issue.code === 'custom' && issue.message.startsWith(path) ? issue.message : `${path} ${issue.message}` });
    }
  }
  if (isRecord(data)) {
    // First, so that a long list of element issues never crowds the selector rule out.
    const selector = checkSelector(data);
    const others = issues.filter((i) => !selector.some((s) => s.path === i.path && s.message === i.message));
    issues.splice(0, issues.length, ...selector, ...others);
  }
  if (issues.length <= MAX_ISSUES) return issues;
  return [...issues.slice(0, MAX_ISSUES - 1), { path: '', message: `and ${issues.length - MAX_ISSUES + 1} more issues` }];
}

/** Validates anything (a job's data, a parsed JSON body) against the RevokeRequest rules. */
export function validateRevokeRequest(data: unknown): RevokeValidation {
  const result = revokeRequestSchema.safeParse(data);
  return result.success ? { ok: true, request: result.data } : { ok: false, issues: toIssues(result.error, data) };
}

export function selectorKind(request: RevokeRequest): SelectorKind {
  if (request.userIds !== undefined) return 'userIds';
  if (request.jtis !== undefined) return 'jtis';
  if (request.userId !== undefined) {
    if (request.issuedBefore !== undefined) return 'userId+issuedBefore';
    return request.exceptJti !== undefined ? 'userId+exceptJti' : 'userId';
  }
  return 'issuedBefore';
}

/** How many ids the request names (1 for a single user; 0 for issuedBefore alone): for the audit log. */
export function idCount(request: RevokeRequest): number {
  if (request.userIds !== undefined) return request.userIds.length;
  if (request.jtis !== undefined) return request.jtis.length;
  return request.userId !== undefined ? 1 : 0;
}
