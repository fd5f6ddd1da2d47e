import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AdaptiveBatchSize, RunBudget } from '../../src/tasks/batching.ts';

describe('AdaptiveBatchSize', () => {
  test('grows towards the size that meets the target, at most doubling', () => {
    const size = new AdaptiveBatchSize(1000, 100, 20_000, 25);
    size.record(1000, 5); // 5x faster than the target: ideal 5000, halfway 3000, capped at 2000
    assert.equal(size.size, 2000);
    size.record(2000, 25); // on target: stays
    assert.equal(size.size, 2000);
  });

  test('shrinks when batches are slow, at most halving, and halves on a timeout', () => {
    const size = new AdaptiveBatchSize(4000, 100, 20_000, 25);
    size.record(4000, 100); // ideal 1000, halfway 2500
    assert.equal(size.size, 2500);
    size.timedOut();
    assert.equal(size.size, 1250);
  });

  test('stays within its bounds and ignores short tail batches', () => {
    const size = new AdaptiveBatchSize(150, 100, 200, 25);
    size.record(150, 1);
    assert.equal(size.size, 200);
    size.record(10, 1000); // a tail of 10 rows says nothing about the rate
    assert.equal(size.size, 200);
    for (let i = 0; i < 10; i++) size.timedOut();
    assert.equal(size.size, 100);
    assert.ok(size.atMinimum);
  });

  test('a cap (capAt) bounds the size at once and as it grows, within its bounds; lifted, the size grows past it', () => {
    const size = new AdaptiveBatchSize(5000, 100, 20_000, 25);
    size.record(5000, 1); // fast: 10000
    assert.equal(size.size, 10_000);
    size.capAt(5000); // someone writes: the purge's own cap
    assert.equal(size.size, 5000);
    size.record(5000, 1);
    assert.equal(size.size, 5000);
    size.timedOut(); // halves from the size it tried
    assert.equal(size.size, 2500);
    size.capAt(50_000); // nobody writes: up to the size's own bound, not beyond
    size.record(2500, 1);
    size.record(5000, 1);
    size.record(10_000, 1);
    size.record(20_000, 1);
    assert.equal(size.size, 20_000);
    size.capAt(10); // below the minimum: the minimum
    assert.equal(size.size, 100);
  });
});

describe('RunBudget', () => {
  test('stops on the signal first, then the row budget, then the time budget', () => {
    let now = 0;
    const controller = new AbortController();
    const budget = new RunBudget(10, 500, controller.signal, () => now);
    assert.equal(budget.stopReason(0), null);
    assert.equal(budget.rowsLeft(200), 300);
    now = 10_000;
    assert.equal(budget.stopReason(0), 'time-budget');
    assert.equal(budget.stopReason(500), 'row-budget');
    controller.abort();
    assert.equal(budget.stopReason(500), 'shutdown');
  });

  test('without a row budget, rows never stop a run', () => {
    const budget = new RunBudget(10, null, undefined, () => 0);
    assert.equal(budget.stopReason(1e12), null);
    assert.equal(budget.rowsLeft(1e12), Number.POSITIVE_INFINITY);
  });
});
