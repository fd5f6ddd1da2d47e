/**
 * The JSON parser of pg-boss's pool: a large json or jsonb value is not parsed, but handed over as
 * an UnreadJson that says how long it was.
 *
 * Why: pg-boss's fetch returns each job's data, and node-pg parses it with JSON.parse before any
 * handler runs. 5 MB of jsonb text made of small values (`{}` a million times: one producer call,
 * under every size limit) parses into a million objects, past the worker's heap
 * (--max-old-space-size=160, k8s/base), and the restarted worker fetched the same job and died
 * again, on every replica. No job data the worker acts on needs pg-boss's parse: the purge's and the
 * reaper's payloads are `{}` (a manual run's record is never fetched), and the revocation consumer
 * reads its job's data again, exactly, after the database has checked that it has the bounded shape
 * of a request (session_janitor.revocation_shape_issue, src/consumers/revoke.ts). Everything else
 * pg-boss reads as json (queue and schedule settings, outputs) is far below the limit.
 */
import pg from 'pg';

/** Characters of json text above which a value is not parsed: 64 KiB parses into a few MB at most. */
export const MAX_PARSED_JSON_CHARS = 65_536;

/** A json value that was not parsed (MAX_PARSED_JSON_CHARS). */
export class UnreadJson {
  readonly chars: number;
  constructor(chars: number) {
    this.chars = chars;
  }
}

const JSON_OIDS: ReadonlySet<number> = new Set([pg.types.builtins.JSON, pg.types.builtins.JSONB]);

function parseBoundedJson(text: string): unknown {
  return text.length > MAX_PARSED_JSON_CHARS ? new UnreadJson(text.length) : JSON.parse(text);
}

/** node-pg's `types` option for a pool whose json values are parsed only when small. */
export const boundedJsonTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): ((text: string) => unknown) =>
    JSON_OIDS.has(oid) && format !== 'binary'
      ? parseBoundedJson
      : (pg.types.getTypeParser(oid, format) as (text: string) => unknown)) as pg.CustomTypesConfig['getTypeParser'],
};
