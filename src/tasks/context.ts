import type pg from 'pg';
import type { Config } from '../config.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';
import type { ClockCheck } from './clock-check.ts';

/** What a task needs from the running worker (or the CLI, or a test). */
export interface TaskContext {
  readonly pool: pg.Pool;
  readonly config: Config;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** The clock check (tasks/clock-check.ts): while it holds, the purge and the reaper delete nothing. Absent: no check. */
  readonly clock?: ClockCheck;
}
