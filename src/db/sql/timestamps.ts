/**
 * Timestamps that leave the database as text, to come back as a parameter of a later statement (a
 * cursor, a slice boundary) or to be read by JavaScript.
 *
 * Why not `x::text`: timestamptz output follows the session's DateStyle and TimeZone, which a DBA
 * may set per database or role. With `DateStyle = 'SQL, DMY'` and `TimeZone = 'Europe/Dublin'` a
 * summer instant prints as `01/07/2025 13:00:00 IST`, which PostgreSQL before 18 reads back as
 * Israel's +02: the purge's cursor went back an hour and the run stalled (issue 17.4). node-pg's
 * own timestamptz parser understands the ISO style only, and yields null for the others.
 *
 * instantText renders a fixed format instead, UTC with microseconds and an explicit era, which
 * every DateStyle and TimeZone reads back as the same instant (`2025-07-01T12:00:00.000000Z AD`,
 * `0044-03-15T12:00:00.000000Z BC`, years past 9999 too); ±infinity print as `infinity` and
 * `-infinity` in every style. test/tasks/timestamps.test.ts checks the round trips on the server.
 */

/**
 * SQL for the text of timestamptz `expression`, independent of the session's settings. It names
 * the expression three times: give it a column or an aggregate, not a subquery (which would run
 * once per mention: see purgeBound).
 */
export const instantText = (expression: string): string =>
  `CASE WHEN isfinite(${expression}) THEN to_char((${expression}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z" BC') ELSE (${expression})::text END`;

/**
 * A Date from instantText's output, for the instants the worker reads (now() of some statement):
 * AD, four-digit years. A BC year or ±infinity, which Date cannot hold, gives an invalid Date.
 */
export const parseInstant = (text: string): Date => new Date(text.replace(/ AD$/, ''));
