/**
 * Fuzzing the revocation path with generated payloads: wrong types, huge arrays, deep nesting,
 * quotes and SQL, NUL bytes and unpaired surrogates, enormous numbers, invalid dates,
 * prototype-pollution keys.
 *
 *   (a) validateRevokeRequest, thousands of payloads, against an independent model of the
 *       contract's rules: it never throws, accepts exactly the valid ones (returning them as
 *       given), and rejects every other one with issues that name the offending field.
 *   (b) the Node client: an invalid request is refused before anything is sent (no query at all;
 *       nothing in the queue), a valid one is sent as validated.
 *   (c) raw JSON through session_janitor.enqueue_revocation into a running worker: text PostgreSQL
 *       cannot hold (NUL, unpaired surrogates, nesting beyond its stack) fails the SQL call with a
 *       clear error and enqueues nothing; every other invalid payload ends failed at once, without
 *       retry, with `invalid_payload` and issues, copied once into the dead-letter queue; the worker
 *       stays up and healthy and deletes nothing.
 *
 * SJ_FUZZ_RUNS multiplies the number of generated cases (default 1); SJ_FUZZ_SEED replays a failure.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import type pg from 'pg';
import { createBoss } from '../src/boss.ts';
import { InvalidRevokeRequestError, enqueueRevocation } from '../src/client.ts';
import { startWorker, type Worker } from '../src/worker.ts';
import { QUEUES } from '../src/queues.ts';
import { MAX_IDS, MAX_TEXT, validateRevokeRequest, type RevokeRequest } from '../src/revoke-request.ts';
import { insertSessions, remainingIds, silentLogger, testConfig, useTestDatabase } from './helpers/database.ts';

const SCALE = Number(process.env.SJ_FUZZ_RUNS ?? 1);
/** Replays a failure: fast-check prints the seed of a failing run. */
const SEED = process.env.SJ_FUZZ_SEED === undefined ? {} : { seed: Number(process.env.SJ_FUZZ_SEED) };

// ---------------------------------------------------------------------------------------------
// The model: the contract's rules, written independently of src/revoke-request.ts.

const FIELDS = ['userId', 'exceptJti', 'userIds', 'jtis', 'issuedBefore', 'reason', 'requestedBy'] as const;
const INT32_MAX = 2 ** 31 - 1;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** RFC 3339 with seconds and an offset PostgreSQL accepts (within ±15:59); fraction of any length. */
const INSTANT = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(\.\d+)?(Z|[+-](0\d|1[0-5]):[0-5]\d)$/;
/** Longest instant accepted: far beyond any real one, far below what PostgreSQL refuses (~150). */
const MAX_INSTANT = 64;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isUserId = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= INT32_MAX;
const isUuid = (v: unknown) => typeof v === 'string' && UUID.test(v);
/** What PostgreSQL's jsonb can hold: no NUL, no unpaired surrogate. */
const storable = (s: string) => !s.includes('\u0000') && s.isWellFormed();
const isText = (v: unknown, min: number) => typeof v === 'string' && v.length >= min && v.length <= MAX_TEXT && storable(v);

function isInstant(v: unknown): boolean {
  if (typeof v !== 'string' || v.length > MAX_INSTANT) return false;
  const m = INSTANT.exec(v);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return year >= 1 && days !== undefined && day >= 1 && day <= days;
}

/** Holes of a sparse array count as elements (undefined), as JSON would have them null. */
const list = (v: unknown, item: (x: unknown) => boolean) => Array.isArray(v) && v.length >= 1 && v.length <= MAX_IDS && Array.from(v as unknown[]).every(item);

/** Whether a string anywhere in the value (keys included) cannot be stored by PostgreSQL. */
function unstorable(value: unknown): boolean {
  if (typeof value === 'string') return !storable(value);
  if (Array.isArray(value)) return value.some(unstorable);
  if (isRecord(value)) return Object.entries(value).some(([k, v]) => !storable(k) || unstorable(v));
  return false;
}

interface Verdict {
  readonly valid: boolean;
  /** Fields with a value of their own that is wrong (or missing, for reason): each must be named by an issue. */
  readonly badFields: readonly string[];
}

function model(payload: unknown): Verdict {
  if (!isRecord(payload)) return { valid: false, badFields: [] };
  const keys = Object.keys(payload);
  const bad: string[] = keys.filter((k) => !(FIELDS as readonly string[]).includes(k));
  // Fields are read as JavaScript reads them (an inherited one counts); only own keys can be unknown.
  const v = (k: string) => payload[k];
  const check = (k: string, ok: (x: unknown) => boolean, required = false) => {
    const x = v(k);
    if (x === undefined ? required : !ok(x)) bad.push(k);
  };
  check('userId', isUserId);
  check('exceptJti', isUuid);
  check('userIds', (x) => list(x, isUserId));
  check('jtis', (x) => list(x, isUuid));
  check('issuedBefore', isInstant);
  check('reason', (x) => isText(x, 1), true);
  check('requestedBy', (x) => isText(x, 0));
  const present = ['userId', 'userIds', 'jtis', 'issuedBefore'].filter((k) => v(k) !== undefined);
  const selectorOk =
    (present.length === 1 || (present.length === 2 && present.includes('userId') && present.includes('issuedBefore'))) &&
    (v('exceptJti') === undefined || (present.length === 1 && present[0] === 'userId'));
  return { valid: bad.length === 0 && selectorOk, badFields: bad };
}

/** The request as the validator returns it: the payload's fields that are not undefined. */
const defined = (payload: Record<string, unknown>) => Object.fromEntries(FIELDS.filter((k) => payload[k] !== undefined).map((k) => [k, payload[k]]));

// ---------------------------------------------------------------------------------------------
// Generators.

const SQL = [
  "'; DROP TABLE auth.refresh_session; --",
  '" OR 1=1 --',
  "1' OR '1'='1",
  '$1',
  '$$; DELETE FROM auth.refresh_session; $$',
  "\\'; SELECT pg_sleep(10); --",
  '%s%n%x',
  '{{7*7}}',
  '<script>alert(1)</script>',
  '../../etc/passwd',
];
const NUMBERS = [
  0,
  -0,
  -1,
  1.5,
  2 ** 31,
  2 ** 31 - 1,
  2 ** 32,
  Number.MAX_SAFE_INTEGER + 2,
  1e308,
  -1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  5e-324,
  Number.NaN,
  Infinity,
  -Infinity,
];
const INSTANTS_BAD = [
  '2026-02-30T00:00:00Z',
  '2025-02-29T00:00:00Z',
  '2026-13-01T00:00:00Z',
  '2026-00-10T00:00:00Z',
  '0000-01-01T00:00:00Z',
  '2026-01-01T00:00:00',
  '2026-01-01 00:00:00Z',
  '2026-01-01T24:00:00Z',
  '2026-01-01T12:60:00Z',
  '2026-01-01T12:00:60Z',
  '2026-01-01T12:00Z',
  '2026-01-01T12:00:00+24:00',
  '2026-01-01T12:00:00+0100',
  '2026-01-01T12:00:00.+01:00',
  '2026-01-01t12:00:00z',
  '+002026-01-01T00:00:00Z',
  `2026-01-01T00:00:00.${'1'.repeat(150)}Z`,
  `2026-01-01T00:00:00.${'0'.repeat(50)}Z`,
  'now',
  'infinity',
  '-infinity',
  'epoch',
  'yesterday',
  '',
  '2026-01-01T00:00:00Z; DROP TABLE auth.refresh_session',
];
const INSTANTS_GOOD = [
  '2026-11-28T12:00:00Z',
  '2026-11-28T13:00:00+01:00',
  '0001-01-01T00:00:00+14:00',
  '9999-12-31T23:59:59-14:00',
  '2024-02-29T23:59:59.999999999Z',
  '2000-01-01T00:00:00-00:00',
];
const UNSTORABLE = ['a\u0000b', '\u0000', '\ud800', 'x\udfff', 'ok\ud83d'];
const HOSTILE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'userID',
  ' userId',
  'reason ',
  'user_id',
  'selector',
  '',
  'a'.repeat(300),
];

/** Pre-built huge arrays, shared (generating 100001 elements per case would dominate the run). */
const HUGE = {
  ids100000: Array.from({ length: MAX_IDS }, (_, i) => i + 1),
  ids100001: Array.from({ length: MAX_IDS + 1 }, (_, i) => i + 1),
  jtis100001: Array.from({ length: MAX_IDS + 1 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`),
  idsWithOneBad: Array.from({ length: MAX_IDS }, (_, i) => (i === 77_777 ? -1 : i + 1)),
};

function nested(depth: number, leaf: unknown, asObject: boolean): unknown {
  let value = leaf;
  for (let i = 0; i < depth; i += 1) value = asObject ? { a: value } : [value];
  return value;
}

const userId = fc.integer({ min: 1, max: INT32_MAX });
const uuid = fc.oneof(
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
);
const text = (min: number) =>
  fc.string({ minLength: min, maxLength: MAX_TEXT, unit: 'grapheme-composite' }).filter((s) => s.length >= min && s.length <= MAX_TEXT);
const instant = fc.oneof(
  fc.constantFrom(...INSTANTS_GOOD),
  fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
);

/** Valid requests of every selector. */
const validRequest: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.oneof(
      { weight: 6, arbitrary: fc.record({ userId }) },
      { weight: 6, arbitrary: fc.record({ userId, exceptJti: uuid }) },
      { weight: 6, arbitrary: fc.record({ userIds: fc.array(userId, { minLength: 1, maxLength: 20 }) }) },
      { weight: 6, arbitrary: fc.record({ jtis: fc.array(uuid, { minLength: 1, maxLength: 20 }) }) },
      { weight: 6, arbitrary: fc.record({ issuedBefore: instant }) },
      { weight: 6, arbitrary: fc.record({ userId, issuedBefore: instant }) },
      { weight: 1, arbitrary: fc.constant({ userIds: HUGE.ids100000 }) },
    ),
    fc.record({ reason: fc.oneof(text(1), fc.constantFrom(...SQL)), requestedBy: fc.option(fc.oneof(text(0), fc.constantFrom(...SQL)), { nil: undefined }) }),
  )
  .map(([selector, common]) => ({ ...selector, ...common }));

/** Anything at all, for one field. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...NUMBERS) },
  { weight: 4, arbitrary: fc.constantFrom(...SQL) },
  { weight: 4, arbitrary: fc.constantFrom(...INSTANTS_BAD) },
  { weight: 4, arbitrary: fc.constantFrom(...UNSTORABLE) },
  { weight: 4, arbitrary: fc.constantFrom(null, true, false, '', ' ', '42', '1e3', [], {}, [null], ['42']) },
  // Rarer than the others: validating 100000 elements is what costs time here.
  { weight: 1, arbitrary: fc.constantFrom(HUGE.ids100001, HUGE.jtis100001, HUGE.idsWithOneBad) },
  { weight: 4, arbitrary: fc.constantFrom(nested(2000, 1, false), nested(2000, 'x', true)) },
  { weight: 4, arbitrary: fc.string({ maxLength: 300 }) },
  { weight: 4, arbitrary: fc.constantFrom('x'.repeat(MAX_TEXT + 1), 'x'.repeat(100_000)) },
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 4, arbitrary: userId },
  { weight: 4, arbitrary: uuid },
  { weight: 4, arbitrary: instant },
  { weight: 4, arbitrary: fc.array(fc.oneof(userId, uuid, fc.constantFrom(...NUMBERS), fc.string()), { maxLength: 5 }) },
);

/** A valid request with one thing wrong, or two. */
const mutated: fc.Arbitrary<unknown> = fc
  .tuple(
    validRequest,
    fc.array(fc.tuple(fc.oneof(fc.constantFrom(...FIELDS), fc.constantFrom(...HOSTILE_KEYS)), fc.oneof(hostileValue, fc.constant(undefined)), fc.boolean()), {
      minLength: 1,
      maxLength: 2,
    }),
  )
  .map(([request, edits]) => {
    const payload: Record<string, unknown> = { ...request };
    for (const [key, value, remove] of edits) {
      if (remove && key in payload) delete payload[key];
      // defineProperty: an own `__proto__` key, as JSON.parse makes one.
      else Object.defineProperty(payload, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return payload;
  });

/** Objects built from the field names and junk, with values of any kind. */
const soup: fc.Arbitrary<unknown> = fc.dictionary(
  fc.oneof(fc.constantFrom(...FIELDS), fc.constantFrom(...HOSTILE_KEYS), fc.string({ maxLength: 10 })),
  hostileValue,
  { maxKeys: 5 },
);

const payload: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: validRequest },
  { weight: 5, arbitrary: mutated },
  { weight: 2, arbitrary: soup },
  { weight: 1, arbitrary: fc.jsonValue() },
  {
    weight: 1,
    arbitrary: fc.anything({
      withNullPrototype: true,
      withBigInt: true,
      withDate: true,
      withMap: true,
      withSet: true,
      withTypedArray: true,
      withSparseArray: true,
    }),
  },
  { weight: 1, arbitrary: hostileValue },
);

/** Fixed cases that must be in every run. */
const FIXED: readonly unknown[] = [
  JSON.parse('{"__proto__": {"userId": 1, "polluted": true}, "reason": "r"}'),
  JSON.parse('{"userId": 1, "reason": "r", "constructor": {"prototype": {"polluted": true}}}'),
  JSON.parse('{"userId": 1, "reason": "r", "__proto__": null}'),
  Object.assign(Object.create(null) as object, { userId: 1, reason: 'a null-prototype object is still a request' }),
  Object.create({ userId: 1, reason: 'inherited fields are read as JavaScript reads them' }) as unknown,
  { userIds: HUGE.ids100000, reason: 'the largest list allowed' },
  { userIds: HUGE.ids100001, reason: 'one id too many' },
  { jtis: HUGE.jtis100001, reason: 'one jti too many' },
  { userIds: HUGE.idsWithOneBad, reason: 'one bad id among 100000' },
  { userId: 1, reason: 'x'.repeat(MAX_TEXT) },
  { userId: 1, reason: 'x'.repeat(MAX_TEXT + 1) },
  { userId: 1, reason: 'a\u0000b' },
  { userId: 1, reason: 'r', requestedBy: '\ud800' },
  { issuedBefore: `2026-01-01T00:00:00.${'1'.repeat(150)}Z`, reason: 'a fraction PostgreSQL refuses' },
  { issuedBefore: `2026-01-01T00:00:00.${'1'.repeat(40)}Z`, reason: 'a long fraction that still fits' },
  { userId: 1, issuedBefore: '2026-01-01T00:00:00Z', exceptJti: '5f0c2a4e-8d1b-4c6f-9a3e-1b2c3d4e5f60', reason: 'r' },
  nested(100_000, 1, false),
  nested(100_000, 1, true),
  { userId: nested(100_000, 1, false), reason: 'r' },
  { userIds: [1, 2, 3], jtis: ['5f0c2a4e-8d1b-4c6f-9a3e-1b2c3d4e5f60'], reason: 'r' },
];

/** The checks every verdict of the validator must pass. */
function checkValidation(data: unknown): void {
  let result: ReturnType<typeof validateRevokeRequest>;
  try {
    result = validateRevokeRequest(data);
  } catch (error) {
    assert.fail(`validateRevokeRequest threw ${String(error)}`);
  }
  const expected = model(data);
  assert.equal(
    result.ok,
    expected.valid,
    `the model says ${expected.valid ? 'valid' : `invalid (${expected.badFields.join(', ')})`}, the validator ${JSON.stringify(result).slice(0, 400)}`,
  );
  if (result.ok) {
    assert.ok(isRecord(data));
    assert.deepEqual(result.request, defined(data));
    return;
  }
  assert.ok(result.issues.length >= 1 && result.issues.length <= 20, `${result.issues.length} issues`);
  const keys = isRecord(data) ? Object.keys(data) : [];
  for (const issue of result.issues) {
    assert.equal(typeof issue.path, 'string');
    assert.ok(typeof issue.message === 'string' && issue.message.length > 0);
    const top = /^[^[.]*/.exec(issue.path)?.[0] ?? '';
    // An unknown key is its own path, verbatim (it may hold '[' or '.').
    assert.ok(
      top === '' || keys.includes(issue.path) || keys.includes(top) || top === 'reason',
      `issue path ${JSON.stringify(issue.path).slice(0, 80)} names no field of the payload`,
    );
  }
  if (result.issues.length < 20) {
    for (const field of expected.badFields) {
      assert.ok(
        result.issues.some((i) => i.path === field || i.path.startsWith(`${field}[`) || i.path.startsWith(`${field}.`)),
        `no issue names ${JSON.stringify(field).slice(0, 80)}: ${JSON.stringify(result.issues).slice(0, 400)}`,
      );
    }
  }
}

describe('fuzz: the revocation path', () => {
  test('(a) validateRevokeRequest: never throws, accepts exactly the valid payloads, names the field of every issue', () => {
    for (const data of FIXED) checkValidation(data);
    fc.assert(
      fc.property(payload, (data) => checkValidation(data)),
      { numRuns: 4000 * SCALE, ...SEED },
    );
    assert.equal(Object.hasOwn(Object.prototype, 'polluted'), false, 'Object.prototype was polluted');
    assert.equal(({} as Record<string, unknown>).userId, undefined);
  });

  describe('with a database', () => {
    const db = useTestDatabase();
    const revokeJobs = async () =>
      (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1', [QUEUES.revoke])).rows[0]?.n ?? -1;

    test('(b) the Node client refuses an invalid request before sending anything, and sends a valid one as validated', async () => {
      // A target that records every query: an invalid request must never reach it.
      const sent: unknown[][] = [];
      const recorder = {
        query: async (statement: { values?: unknown[] }) => {
          sent.push(statement.values ?? []);
          return { rows: [{ id: 'job-id' }] };
        },
      } as unknown as pg.Pool;
      await fc.assert(
        fc.asyncProperty(payload, async (data) => {
          sent.length = 0;
          const verdict = validateRevokeRequest(data);
          if (verdict.ok) {
            assert.equal(await enqueueRevocation(recorder, data as RevokeRequest), 'job-id');
            assert.equal(sent.length, 1);
            assert.deepEqual(JSON.parse(String(sent[0]?.[0])), JSON.parse(JSON.stringify(verdict.request)));
          } else {
            await assert.rejects(enqueueRevocation(recorder, data as RevokeRequest), (error: unknown) => {
              assert.ok(error instanceof InvalidRevokeRequestError, String(error));
              assert.deepEqual(error.issues, verdict.issues);
              return true;
            });
            assert.equal(sent.length, 0, 'an invalid request was sent');
          }
        }),
        { numRuns: 2000 * SCALE, ...SEED },
      );

      // The real targets: a pool (the SQL function) and a PgBoss (boss.send). Nothing is enqueued.
      const producer = createBoss(testConfig(db.url), db.url, { role: 'tool', migrate: false }, silentLogger());
      await producer.start();
      try {
        const invalid = fc.sample(
          payload.filter((data) => !model(data).valid),
          { numRuns: 200 * SCALE, seed: 7 },
        );
        for (const [i, data] of [...FIXED.filter((d) => !model(d).valid), ...invalid].entries()) {
          await assert.rejects(enqueueRevocation(i % 2 === 0 ? db.pool : producer, data as RevokeRequest), InvalidRevokeRequestError);
        }
      } finally {
        await producer.stop({ graceful: false });
      }
      assert.equal(await revokeJobs(), 0, 'an invalid request reached the queue');
    });

    test(
      '(c) raw JSON through the SQL function into a running worker: clear errors, dead letters, nothing deleted, the worker stays up',
      { timeout: 120_000 },
      async (t) => {
        const sessions = await insertSessions(
          db.pool,
          Array.from({ length: 200 }, (_, i) => ({ expiresIn: 86_400, user: i % 20 })),
        );
        const before = await remainingIds(db.pool);
        const userIds = [...new Set(sessions.map((s) => s.userId))];
        const unhandled: unknown[] = [];
        const onUnhandled = (reason: unknown) => unhandled.push(reason);
        process.on('unhandledRejection', onUnhandled);
        let worker: Worker | undefined;
        try {
          worker = await startWorker(testConfig(db.url, { JANITOR_REVOKE_CONCURRENCY: '8' }), silentLogger());

          // JSON texts: generated invalid payloads (those with a valid user id aimed at the real users),
          // judged after the JSON round trip (undefined fields vanish, NaN turns null), and hand-written
          // texts that JSON.stringify cannot produce.
          const aimed = (data: unknown) =>
            isRecord(data) && isUserId(data.userId) ? { ...data, userId: userIds[Number(data.userId) % userIds.length] } : data;
          const generated = fc.sample(
            fc
              .oneof(mutated, soup, fc.jsonValue({ maxDepth: 4 }))
              .map((data) => JSON.stringify(aimed(data)) ?? 'null')
              .filter((text) => !model(JSON.parse(text)).valid),
            { numRuns: 300, seed: 11 },
          );
          const handWritten = [
            `{"userId": 1e400, "reason": "r"}`,
            `{"userId": ${userIds[0]}.5, "reason": "r"}`,
            `{"userId": ${userIds[0]}, "userId": "twice", "reason": "r"}`,
            `{"userIds": [${HUGE.ids100001.join(',')}], "reason": "r"}`,
            `{"issuedBefore": "2026-01-01T00:00:00.${'1'.repeat(150)}Z", "reason": "r"}`,
            `{"__proto__": {"userId": ${userIds[0]}}, "reason": "r"}`,
            `{"userId": ${userIds[0]}, "reason": "r", "constructor": {"prototype": {"isAdmin": true}}}`,
            `{"userId": ${'['.repeat(3000)}${']'.repeat(3000)}, "reason": "r"}`,
            `"${SQL[0]}"`,
            'null',
            '12345678901234567890',
          ];
          const texts = [...generated.filter((text) => !unstorable(JSON.parse(text))), ...handWritten];
          const unstorableTexts = generated.filter((text) => unstorable(JSON.parse(text)));
          const refused = [
            ...unstorableTexts.map((text) => ({ text, code: /^22P0[25]$/, message: /unsupported Unicode escape sequence|invalid input syntax for type json/ })),
            { text: `{"userId": ${userIds[0]}, "reason": "a\\u0000b"}`, code: /^22P05$/, message: /unsupported Unicode escape sequence/ },
            { text: `{"userId": ${userIds[0]}, "reason": "\\ud800"}`, code: /^22P02$/, message: /invalid input syntax for type json/ },
            { text: `{"a\\u0000": 1}`, code: /^22P05$/, message: /unsupported Unicode escape sequence/ },
            { text: `{"userIds": ${'['.repeat(50_000)}${']'.repeat(50_000)}, "reason": "r"}`, code: /^54001$/, message: /stack depth/ },
            { text: `{"userId": 1e1000000, "reason": "r"}`, code: /^22003$/, message: /overflows numeric/ },
          ];

          // What cannot be stored fails the call itself, clearly, and enqueues nothing.
          for (const { text, code, message } of refused) {
            await assert.rejects(db.pool.query('SELECT session_janitor.enqueue_revocation($1::jsonb)', [text]), (error: unknown) => {
              assert.ok(error instanceof Error && 'code' in error, String(error));
              assert.match(String(error.code), code, error.message);
              assert.match(error.message, message);
              return true;
            });
          }
          assert.equal(await revokeJobs(), 0);

          // enqueue_global_revocation: it takes every request (enqueue_revocation refuses issuedBefore
          // without userId) and refuses at once, with a documented error, an issuedBefore later than
          // now() + 5 minutes and more than 100000 ids or 5000000 bytes (migration 4).
          const ids: string[] = [];
          const limited: string[] = [];
          const enqueued: string[] = [];
          for (const text of texts) {
            try {
              const { rows } = await db.pool.query<{ id: string }>('SELECT session_janitor.enqueue_global_revocation($1::jsonb) AS id', [text]);
              assert.ok(rows[0]?.id, text.slice(0, 200));
              ids.push(rows[0].id);
              enqueued.push(text);
            } catch (error) {
              assert.ok(error instanceof Error && 'code' in error, String(error));
              const documented =
                (error.code === '22023' && /issuedBefore .* now\(\) plus 5 minutes|has \d+ ids, at most 100000/.test(error.message)) ||
                (error.code === '54000' && /at most 5000000/.test(error.message)) ||
                // Migration 6: a payload of more than 64 KiB must have the bounded shape of a request.
                (error.code === '22023' &&
                  Buffer.byteLength(text) > 65_536 &&
                  /must not be a JSON|must be an array of 1 to 100000|must hold only JSON|must be a JSON object|more than 16 fields/.test(error.message));
              assert.ok(documented, `${text.slice(0, 200)}: ${String(error.code)} ${error.message}`);
              limited.push(text);
            }
          }
          assert.ok(limited.includes(handWritten[3] ?? ''), 'the 100001 ids were enqueued');
          texts.splice(0, texts.length, ...enqueued);
          // SQL NULL, not JSON null: the job carries no data at all.
          const { rows: nullJob } = await db.pool.query<{ id: string }>('SELECT session_janitor.enqueue_global_revocation(NULL) AS id');
          if (nullJob[0]?.id) ids.push(nullJob[0].id);
          texts.push('<SQL NULL>');
          assert.ok(ids.length >= 250, `${ids.length} payloads`);

          interface JobRow {
            id: string;
            state: string;
            retry_count: number;
            output: { error?: string; issues?: Array<{ path?: unknown; message?: unknown }> } | null;
            dead: number;
          }
          const settled = async () =>
            (
              await db.pool.query<JobRow>(
                `SELECT j.id, j.state::text, j.retry_count, j.output,
                      (SELECT count(*)::int FROM pgboss.job d WHERE d.name = $2 AND d.source_id = j.id) AS dead
                 FROM pgboss.job j WHERE j.name = $1 AND j.id = ANY($3::uuid[])`,
                [QUEUES.revoke, QUEUES.deadLetter, ids],
              )
            ).rows;
          const deadline = Date.now() + 60_000;
          let jobs = await settled();
          while (jobs.some((j) => j.state !== 'failed' || j.dead === 0) && Date.now() < deadline) {
            assert.equal((await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`)).status, 200);
            await sleep(250);
            jobs = await settled();
          }
          assert.equal(jobs.length, ids.length);
          for (const job of jobs) {
            const text = texts[ids.indexOf(job.id)]?.slice(0, 200);
            assert.equal(job.state, 'failed', `${text}: ${job.state} ${JSON.stringify(job.output)}`);
            assert.equal(job.retry_count, 0, `${text}: retried`);
            assert.equal(job.output?.error, 'invalid_payload', `${text}: ${JSON.stringify(job.output)}`);
            assert.ok(Array.isArray(job.output.issues) && job.output.issues.length >= 1, text);
            for (const issue of job.output.issues)
              assert.ok(typeof issue.path === 'string' && typeof issue.message === 'string' && issue.message.length > 0, `${text}: ${JSON.stringify(issue)}`);
            assert.equal(job.dead, 1, `${text}: ${job.dead} dead-letter copies`);
          }

          assert.deepEqual(await remainingIds(db.pool), before, 'an invalid payload deleted sessions');
          assert.deepEqual(unhandled, []);
          assert.equal((await fetch(`http://127.0.0.1:${worker.metricsPort}/healthz`)).status, 200);
          assert.equal((await fetch(`http://127.0.0.1:${worker.metricsPort}/readyz`)).status, 200);
          const rejected = (await worker.metrics.jobs.get()).values.find((v) => v.labels.queue === QUEUES.revoke && v.labels.outcome === 'rejected')?.value;
          assert.equal(rejected, ids.length);
          t.diagnostic(`${ids.length} payloads dead-lettered as invalid_payload, ${refused.length + limited.length} refused by the SQL call itself`);
        } finally {
          process.off('unhandledRejection', onUnhandled);
          await worker?.stop();
        }
      },
    );
  });
});
