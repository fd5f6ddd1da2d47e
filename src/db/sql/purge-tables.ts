/**
 * What the purge needs of an extra table of JANITOR_PURGE_TABLES, read from the catalog in one
 * statement (db/purge-tables.ts turns it into one line per mistake): the table, its expiry column's
 * type, a valid btree index without a predicate whose first column is the expiry column (the
 * batches walk it), its primary key's columns (held rows and ties go by key), and which of the
 * privileges its task needs (queues.ts) the role lacks (asked one at a time: has_table_privilege is
 * true for any one of a list). $1 schema, $2 table, $3 expiry column, $4 the privileges: values,
 * never text of the statement.
 */
import type { Statement } from './identifiers.ts';

export interface PurgeTableCatalogRow {
  readonly present: boolean;
  /** r (table) or p (partitioned table) are purged; anything else is refused. */
  readonly relkind: string | null;
  /** Of $4, those the role lacks (all when the table is absent). */
  readonly missing_privileges: string[];
  /** null: no such column. */
  readonly expiry_type: string | null;
  /** The column is a timestamptz, whatever its precision (timestamptz(3) is one too). */
  readonly expiry_timestamptz: boolean;
  readonly indexed: boolean;
  readonly key_columns: string[];
  /** current_user: the role the grants are missing for. */
  readonly role: string;
}

export const purgeTableCatalog: Statement = {
  name: 'sj_purge_table_catalog',
  text: `SELECT t IS NOT NULL AS present,
       (SELECT c.relkind::text FROM pg_class c WHERE c.oid = t) AS relkind,
       ARRAY(SELECT p FROM unnest($4::text[]) AS p WHERE t IS NULL OR NOT has_table_privilege(t, p)) AS missing_privileges,
       (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
         WHERE a.attrelid = t AND a.attname = $3::text AND a.attnum > 0 AND NOT a.attisdropped) AS expiry_type,
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = t AND a.attname = $3::text AND a.attnum > 0 AND NOT a.attisdropped
                  AND a.atttypid = 'timestamptz'::regtype) AS expiry_timestamptz,
       EXISTS (SELECT 1 FROM pg_index i
                 JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = ic.relam
                 JOIN pg_attribute a ON a.attrelid = t AND a.attname = $3::text AND NOT a.attisdropped
                WHERE i.indrelid = t AND am.amname = 'btree' AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indisvalid) AS indexed,
       ARRAY(SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = t AND i.indisprimary
              ORDER BY a.attnum) AS key_columns,
       current_user::text AS role
  FROM (SELECT to_regclass(format('%I.%I', $1::text, $2::text)) AS t) AS lookup`,
};
