/**
 * The statements of pauses (session_janitor.pause, migration 8; src/tasks/pause.ts says what a
 * pause does). Instants leave as Unix seconds (float8): no DateStyle or TimeZone reaches them.
 */
import { quote, type Statement } from './identifiers.ts';
import { OWN_SCHEMA } from './migrations.ts';

const PAUSE_TABLE = `${quote(OWN_SCHEMA)}.pause`;

const COLUMNS = `task, reason, paused_by,
       extract(epoch FROM since)::float8 AS since, extract(epoch FROM set_at)::float8 AS set_at,
       extract(epoch FROM until)::float8 AS until, renewals, extract(epoch FROM now())::float8 AS now`;

/**
 * $1 tasks (text[]), $2 seconds, $3 reason. A task already paused (until still ahead) is renewed:
 * it keeps `since` and counts one more renewal; a pause that had ended starts afresh.
 */
export const setPause: Statement = {
  name: 'sj_pause_set',
  text: `INSERT INTO ${PAUSE_TABLE} AS p (task, reason, until)
SELECT t, $3::text, now() + make_interval(secs => $2::float8) FROM unnest($1::text[]) AS t
ON CONFLICT (task) DO UPDATE
   SET reason = EXCLUDED.reason, paused_by = current_user, set_at = now(), until = EXCLUDED.until,
       since = CASE WHEN p.until > now() THEN p.since ELSE now() END,
       renewals = CASE WHEN p.until > now() THEN p.renewals + 1 ELSE 0 END
RETURNING ${COLUMNS}`,
};

/** $1 tasks (text[]): the pauses in force that were ended. */
export const clearPause: Statement = {
  name: 'sj_pause_clear',
  text: `DELETE FROM ${PAUSE_TABLE} WHERE task = ANY($1::text[]) RETURNING ${COLUMNS}`,
};

/** The pauses in force (an ended one stays in the table until the next pause or resume of its task). */
export const activePauses: Statement = {
  name: 'sj_pause_active',
  text: `SELECT ${COLUMNS} FROM ${PAUSE_TABLE} WHERE until > now() ORDER BY task`,
};

/** Whether the task named by the parameter `task` ($n) is paused now: a boolean expression. */
export const pausedNow = (task: string): string => `EXISTS (SELECT 1 FROM ${PAUSE_TABLE} WHERE task = ${task}::text AND until > now())`;

/** $1 task: whether it is paused now (what a run reads between batches). */
export const isPaused: Statement = {
  name: 'sj_pause_is_paused',
  text: `SELECT ${pausedNow('$1')} AS paused`,
};

export interface PauseRow {
  readonly task: string;
  readonly reason: string;
  readonly paused_by: string;
  readonly since: number;
  readonly set_at: number;
  readonly until: number;
  readonly renewals: number;
  readonly now: number;
}
