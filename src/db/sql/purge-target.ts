/**
 * What the purge's statements (db/sql/purge-expired.ts) need to know of a table: its name, the
 * timestamptz column its rows expire on (with a btree index led by it) and its single-column primary
 * key (held rows and ties are deleted by it). The sessions table's are fixed; an extra table's come
 * from JANITOR_PURGE_TABLES and its catalog (db/purge-tables.ts checks them).
 */
import type { QualifiedName } from '../../config.ts';

export interface PurgeTarget {
  readonly table: QualifiedName;
  readonly expiry: string;
  readonly key: string;
  /**
   * The key array's type for `= ANY($1::…)`: the sessions table's bigint[]. null: the server infers
   * it from the key column (an extra table's key may be a uuid, a bigint identity, text...).
   */
  readonly keyArray: 'bigint[]' | null;
}

/** The sessions table's columns (docs/CONTRACT.md). */
export const sessionTarget = (table: QualifiedName): PurgeTarget => ({ table, expiry: 'expires_at', key: 'id', keyArray: 'bigint[]' });

/** A bare table name is the sessions table. */
export const asTarget = (target: QualifiedName | PurgeTarget): PurgeTarget => ('table' in target ? target : sessionTarget(target));
