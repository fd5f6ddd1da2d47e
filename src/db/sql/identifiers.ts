/**
 * Identifiers are the only configuration that reaches SQL text: validated in config.ts against
 * [a-z_][a-z0-9_]*, and quoted here. Values always travel as parameters.
 */
import pg from 'pg';
import type { QualifiedName } from '../../config.ts';

export const quote = (name: string): string => pg.escapeIdentifier(name);

export const qualified = (table: QualifiedName): string => `${quote(table.schema)}.${quote(table.name)}`;

/** A prepared statement's name: unique per text, so the same name never means two texts. */
export const statementName = (operation: string, table: QualifiedName): string => `sj_${operation}_${table.schema}_${table.name}`.slice(0, 63);

export interface Statement {
  readonly name: string;
  readonly text: string;
}
