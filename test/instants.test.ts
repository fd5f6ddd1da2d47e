/**
 * issuedBefore reaches PostgreSQL as `$3::timestamptz`: every instant the validation accepts must be
 * one PostgreSQL accepts (issue 17.8: offsets beyond ±15:59
 * passed validation, PostgreSQL refused them with 22009, and the job was retried as if the failure
 * were transient). Instants built from fields around and past every limit, on the real server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { validateRevokeRequest } from '../src/revoke-request.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const SEED = process.env.SJ_FUZZ_SEED === undefined ? {} : { seed: Number(process.env.SJ_FUZZ_SEED) };
const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Each field within its range, at its edges, or one past them. */
const field = (min: number, max: number) =>
  fc.oneof(
    fc.integer({ min, max }),
    fc.constantFrom(min, max, min - 1, max + 1).filter((n) => n >= 0),
  );

const instant = fc
  .record({
    year: fc.oneof(fc.integer({ min: 1, max: 9999 }), fc.constantFrom(0, 1, 1970, 9999)),
    month: field(1, 12),
    day: field(1, 31),
    hour: field(0, 23),
    minute: field(0, 59),
    second: field(0, 59),
    fraction: fc.oneof(fc.constant(''), fc.stringMatching(/^\.\d{1,40}$/)),
    offset: fc.oneof(
      fc.constant('Z'),
      fc
        .tuple(fc.constantFrom('+', '-'), field(0, 15), field(0, 59), fc.integer({ min: 16, max: 99 }), fc.boolean())
        .map(([sign, hours, minutes, beyond, far]) => `${sign}${pad(far ? beyond : hours)}:${pad(minutes)}`),
    ),
  })
  .map((f) => `${pad(f.year, 4)}-${pad(f.month)}-${pad(f.day)}T${pad(f.hour)}:${pad(f.minute)}:${pad(f.second)}${f.fraction}${f.offset}`);

describe('issuedBefore instants and PostgreSQL', () => {
  let db: TestDatabase;
  let client: pg.Client;
  before(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
  });
  after(async () => {
    await client.end();
    await db.drop();
  });

  /** PostgreSQL's reading of the text (milliseconds since the epoch), or its error. */
  async function postgres(text: string): Promise<number | Error> {
    try {
      const { rows } = await client.query<{ ms: number }>('SELECT extract(epoch FROM $1::timestamptz)::float8 * 1000 AS ms', [text]);
      return rows[0]?.ms ?? new Error('no row');
    } catch (error) {
      return error instanceof Error ? error : new Error(String(error));
    }
  }

  test('every instant the validation accepts, PostgreSQL accepts', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(instant, async (text) => {
        if (!validateRevokeRequest({ issuedBefore: text, reason: 'r' }).ok) return;
        accepted += 1;
        const ms = await postgres(text);
        assert.ok(typeof ms === 'number', `${text}: accepted by the validation, refused by PostgreSQL: ${String(ms)}`);
      }),
      { numRuns: 600, ...SEED },
    );
    // The generator must reach valid instants often enough for this to mean something.
    assert.ok(accepted > 60, `only ${accepted} accepted instants`);
  });

  test('the limits: ±15:59 are accepted by both, ±16:00 by neither', async () => {
    for (const text of ['2026-11-28T12:00:00+15:59', '2026-11-28T12:00:00-15:59']) {
      assert.ok(validateRevokeRequest({ issuedBefore: text, reason: 'r' }).ok, text);
      assert.equal(typeof (await postgres(text)), 'number', text);
    }
    for (const text of ['2026-11-28T12:00:00+16:00', '2026-11-28T12:00:00-16:00']) {
      assert.ok(!validateRevokeRequest({ issuedBefore: text, reason: 'r' }).ok, text);
      assert.match(String(await postgres(text)), /time zone displacement out of range/, text);
    }
  });
});
