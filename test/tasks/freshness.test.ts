import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FreshnessFloor } from '../../src/tasks/freshness.ts';

/** A floor of `objective` seconds on a hand-moved clock, with what it reported. */
function floor(objective: number) {
  const clock = { now: 0 };
  const events: string[] = [];
  let counted = 0;
  const freshness = new FreshnessFloor(objective, {
    now: () => clock.now,
    onStart: (waited) => events.push(`start ${waited}`),
    onEnd: (ms) => events.push(`end ${ms}`),
    onOverride: (ms) => (counted += ms),
  });
  return { freshness, clock, events, counted: () => counted };
}

describe('FreshnessFloor', () => {
  test('past the objective it overrides, counts the time as it passes, and ends once the oldest row left is back within it', () => {
    const { freshness, clock, events, counted } = floor(3600);
    assert.equal(freshness.overriding, false);
    freshness.record(0, 7200);
    assert.equal(freshness.overriding, true);
    clock.now = 1000;
    freshness.record(0, 5000);
    assert.equal(counted(), 1000, 'counted at each batch, not only at the end');
    clock.now = 1500;
    freshness.record(0, 3600); // at the objective: within it
    assert.equal(freshness.overriding, false);
    clock.now = 9000;
    freshness.finish();
    assert.deepEqual(events, ['start 7200', 'end 1500']);
    assert.equal(counted(), 1500);
  });

  test("several lanes: the run's oldest is the oldest of theirs; a lane done or unable to tell leaves the others' readings", () => {
    const { freshness, clock, counted } = floor(60);
    freshness.record(0, 30);
    freshness.record(1, 120);
    assert.equal(freshness.overriding, true);
    freshness.record(0, 10);
    assert.equal(freshness.overriding, true, 'lane 1 is still past it');
    freshness.record(1, undefined); // a tie's batch: lane 1's last reading stands
    assert.equal(freshness.overriding, true);
    clock.now = 400;
    freshness.record(1, null); // lane 1 is done
    assert.equal(freshness.overriding, false);
    assert.equal(counted(), 400);
  });

  test('a run that ends overriding counts its time up to the end', () => {
    const { freshness, clock, events, counted } = floor(60);
    freshness.record(0, 61);
    clock.now = 250;
    freshness.finish();
    assert.equal(counted(), 250);
    assert.deepEqual(events, ['start 61']);
  });

  test('within the objective, or nothing with an age (-infinity): no override at all', () => {
    const { freshness, events, counted } = floor(60);
    freshness.record(0, 59);
    freshness.record(0, null);
    freshness.finish();
    assert.equal(freshness.overriding, false);
    assert.deepEqual(events, []);
    assert.equal(counted(), 0);
  });
});
