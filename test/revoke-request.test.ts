import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_IDS, idCount, selectorKind, validateRevokeRequest, type RevokeIssue, type RevokeRequest } from '../src/revoke-request.ts';

const JTI = '5f0c2a4e-8d1b-4c6f-9a3e-1b2c3d4e5f60';
const JTI2 = '0190c3a4-7b8e-7c3d-9f1a-2b3c4d5e6f70'; // a version 7 UUID

function valid(data: unknown): RevokeRequest {
  const result = validateRevokeRequest(data);
  assert.ok(result.ok, `expected valid, got ${JSON.stringify(result)}`);
  return result.request;
}

function invalid(data: unknown): RevokeIssue[] {
  const result = validateRevokeRequest(data);
  assert.ok(!result.ok, `expected invalid: ${JSON.stringify(data)?.slice(0, 200)}`);
  return result.issues;
}

/** An issue at `path` whose message names `field` (the path, or the fields of a selector rule). */
function assertIssue(issues: RevokeIssue[], path: string, ...names: string[]) {
  const found = issues.find((i) => i.path === path);
  assert.ok(found, `no issue at ${JSON.stringify(path)} in ${JSON.stringify(issues)}`);
  for (const name of names.length > 0 ? names : [path]) assert.ok(found.message.includes(name), `${JSON.stringify(found.message)} does not name ${name}`);
}

describe('RevokeRequest: the valid shapes', () => {
  test('each selector of the contract, with reason and the optional requestedBy', () => {
    assert.deepEqual(valid({ userId: 42, reason: 'password-changed' }), { userId: 42, reason: 'password-changed' });
    assert.deepEqual(valid({ userId: 42, exceptJti: JTI, reason: 'r', requestedBy: 'user:42' }), {
      userId: 42,
      exceptJti: JTI,
      reason: 'r',
      requestedBy: 'user:42',
    });
    assert.deepEqual(valid({ userIds: [1, 2, 3], reason: 'r' }), { userIds: [1, 2, 3], reason: 'r' });
    assert.deepEqual(valid({ jtis: [JTI, JTI2.toUpperCase()], reason: 'r' }), { jtis: [JTI, JTI2.toUpperCase()], reason: 'r' });
    assert.deepEqual(valid({ issuedBefore: '2026-11-28T12:00:00Z', reason: 'r' }), { issuedBefore: '2026-11-28T12:00:00Z', reason: 'r' });
    assert.deepEqual(valid({ userId: 7, issuedBefore: '2026-11-28T13:00:00.123+01:00', reason: 'r' }), {
      userId: 7,
      issuedBefore: '2026-11-28T13:00:00.123+01:00',
      reason: 'r',
    });
  });

  test('limits are inclusive: 100000 ids, 2147483647, 200 characters, an empty requestedBy', () => {
    valid({ userIds: Array.from({ length: MAX_IDS }, (_, i) => i + 1), reason: 'r' });
    valid({ jtis: Array.from({ length: MAX_IDS }, () => JTI), reason: 'r' });
    valid({ userId: 2_147_483_647, reason: 'x'.repeat(200), requestedBy: 'y'.repeat(200) });
    valid({ userId: 1, reason: 'r', requestedBy: '' });
  });

  test('selectorKind and idCount for the audit log', () => {
    assert.equal(selectorKind(valid({ userId: 1, reason: 'r' })), 'userId');
    assert.equal(selectorKind(valid({ userId: 1, exceptJti: JTI, reason: 'r' })), 'userId+exceptJti');
    assert.equal(selectorKind(valid({ userId: 1, issuedBefore: '2026-01-01T00:00:00Z', reason: 'r' })), 'userId+issuedBefore');
    assert.equal(selectorKind(valid({ userIds: [1], reason: 'r' })), 'userIds');
    assert.equal(selectorKind(valid({ jtis: [JTI], reason: 'r' })), 'jtis');
    assert.equal(selectorKind(valid({ issuedBefore: '2026-01-01T00:00:00Z', reason: 'r' })), 'issuedBefore');
    assert.equal(idCount(valid({ userIds: [1, 2, 2], reason: 'r' })), 3);
    assert.equal(idCount(valid({ userId: 1, reason: 'r' })), 1);
    assert.equal(idCount(valid({ issuedBefore: '2026-01-01T00:00:00Z', reason: 'r' })), 0);
  });
});

describe('RevokeRequest: every rule, and messages that name the field', () => {
  test('non-objects are rejected', () => {
    for (const data of [[{ userId: 1, reason: 'r' }], 'userId=1', 42, null, undefined, true]) {
      const issues = invalid(data);
      assert.deepEqual(issues, [{ path: '', message: 'the request must be a JSON object' }]);
    }
  });

  test('reason is required, 1 to 200 characters; requestedBy at most 200', () => {
    assertIssue(invalid({ userId: 1 }), 'reason');
    assert.match(invalid({ userId: 1 })[0]?.message ?? '', /reason is required/);
    assertIssue(invalid({ userId: 1, reason: '' }), 'reason');
    assertIssue(invalid({ userId: 1, reason: 'x'.repeat(201) }), 'reason');
    assertIssue(invalid({ userId: 1, reason: 5 }), 'reason');
    assertIssue(invalid({ userId: 1, reason: 'r', requestedBy: 'x'.repeat(201) }), 'requestedBy');
    assertIssue(invalid({ userId: 1, reason: 'r', requestedBy: null }), 'requestedBy');
  });

  test('unknown fields are rejected, each named', () => {
    const issues = invalid({ userId: 1, reason: 'r', user_id: 1, force: true });
    assertIssue(issues, 'user_id');
    assertIssue(issues, 'force');
  });

  test('exactly one selector', () => {
    assertIssue(invalid({ reason: 'r' }), '', 'userId', 'userIds', 'jtis', 'issuedBefore');
    assertIssue(invalid({ userId: 1, userIds: [2], reason: 'r' }), '', 'userId', 'userIds');
    assertIssue(invalid({ userIds: [1], jtis: [JTI], reason: 'r' }), '', 'userIds', 'jtis');
    assertIssue(invalid({ jtis: [JTI], issuedBefore: '2026-01-01T00:00:00Z', reason: 'r' }), '', 'jtis', 'issuedBefore');
    assertIssue(
      invalid({ userId: 1, userIds: [1], jtis: [JTI], issuedBefore: '2026-01-01T00:00:00Z', reason: 'r' }),
      '',
      'userId',
      'userIds',
      'jtis',
      'issuedBefore',
    );
  });

  test('exceptJti goes only with userId alone', () => {
    assertIssue(invalid({ exceptJti: JTI, reason: 'r' }), '', 'selector');
    assertIssue(invalid({ userIds: [1], exceptJti: JTI, reason: 'r' }), 'exceptJti', 'exceptJti', 'userIds');
    assertIssue(invalid({ userId: 1, issuedBefore: '2026-01-01T00:00:00Z', exceptJti: JTI, reason: 'r' }), 'exceptJti');
    assertIssue(invalid({ userId: 1, exceptJti: 'not-a-uuid', reason: 'r' }), 'exceptJti');
  });

  test('user ids are positive 32-bit integers', () => {
    for (const userId of ['42', -1, 0, 1.5, 2_147_483_648, null, Number.MAX_SAFE_INTEGER + 2]) {
      assertIssue(invalid({ userId, reason: 'r' }), 'userId');
    }
    const issues = invalid({ userIds: [1, '2', -3, 4.5], reason: 'r' });
    assert.deepEqual(
      issues.map((i) => i.path),
      ['userIds[1]', 'userIds[2]', 'userIds[3]'],
    );
    for (const issue of issues) assert.match(issue.message, /^userIds\[\d\] must be a positive 32-bit integer/);
  });

  test('userIds and jtis hold 1 to 100000 entries', () => {
    assertIssue(invalid({ userIds: [], reason: 'r' }), 'userIds');
    assertIssue(invalid({ userIds: Array.from({ length: MAX_IDS + 1 }, (_, i) => i + 1), reason: 'r' }), 'userIds', 'userIds', '100000');
    assertIssue(invalid({ userIds: 5, reason: 'r' }), 'userIds');
    assertIssue(invalid({ jtis: [], reason: 'r' }), 'jtis');
    assertIssue(invalid({ jtis: Array.from({ length: MAX_IDS + 1 }, () => JTI), reason: 'r' }), 'jtis', 'jtis', '100000');
  });

  test('jtis are UUIDs', () => {
    const issues = invalid({ jtis: [JTI, 'nope', `${JTI}0`, 12], reason: 'r' });
    assert.deepEqual(
      issues.map((i) => i.path),
      ['jtis[1]', 'jtis[2]', 'jtis[3]'],
    );
    for (const issue of issues) assert.match(issue.message, /^jtis\[\d\] must be a UUID/);
  });

  test('issuedBefore is an ISO-8601 instant with an offset, and a real date', () => {
    for (const issuedBefore of [
      '2026-11-28T12:00:00', // no offset
      '2026-11-28 12:00:00Z', // not ISO-8601's T
      '2026-11-28',
      '2026-02-30T00:00:00Z', // no such day
      '2025-02-29T00:00:00Z', // not a leap year
      '2026-13-01T00:00:00Z',
      '2026-11-28T24:00:01Z',
      '0000-01-01T00:00:00Z', // PostgreSQL has no year 0
      '2026-11-28T12:00:00+16:00', // PostgreSQL refuses offsets beyond ±15:59 (22009)
      '2026-11-28T12:00:00-23:59',
      'yesterday',
      1_764_331_200_000,
    ]) {
      assertIssue(invalid({ issuedBefore, reason: 'r' }), 'issuedBefore');
    }
    valid({ issuedBefore: '2024-02-29T23:59:59.999999-05:30', reason: 'r' });
    valid({ issuedBefore: '2026-11-28T12:00:00+15:59', reason: 'r' });
    valid({ issuedBefore: '2026-11-28T12:00:00-15:59', reason: 'r' });
  });

  test('every problem is reported at once, and a long list is capped', () => {
    const issues = invalid({ userId: '1', jtis: ['x'], reason: '', extra: 1 });
    for (const path of ['', 'userId', 'jtis[0]', 'reason', 'extra'])
      assert.ok(
        issues.some((i) => i.path === path),
        `no issue at ${path}`,
      );
    const many = invalid({ userIds: Array.from({ length: 1000 }, () => 'x'), reason: 'r' });
    assert.equal(many.length, 20);
    assert.match(many.at(-1)?.message ?? '', /and 981 more issues/);
  });
});
