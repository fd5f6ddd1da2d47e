/** The database's clock, for the clock check (src/tasks/clock-check.ts): Unix seconds, no DateStyle involved. */
import type { Statement } from './identifiers.ts';

export const databaseNow: Statement = {
  name: 'sj_clock_now',
  text: 'SELECT extract(epoch FROM now())::float8 AS now',
};
