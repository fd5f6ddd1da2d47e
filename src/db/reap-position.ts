/**
 * Where the idle reaper's walk of the primary key stands (session_janitor.reap_position): read by
 * the reap task as it moves it, and by `status` and `reap-idle` to say how far a pass is.
 */
import type pg from 'pg';
import type { QualifiedName } from '../config.ts';
import { positionKey, readPosition } from './sql/reap-idle.ts';
import { parseInstant } from './sql/timestamps.ts';

/** Ids are numbers: the primary key is an integer column. */
export interface ReapPosition {
  readonly pass: number;
  /** The pass covers (firstId, endId]. */
  readonly firstId: number;
  /** Every id up to lastId is done in this pass. */
  readonly lastId: number;
  readonly endId: number;
  readonly passStartedAt: Date;
  /** null while the pass is in progress. */
  readonly passFinishedAt: Date | null;
  /** Rows this pass deleted so far. */
  readonly passDeleted: number;
  /** lastId's share of the pass, 0..1. */
  readonly fraction: number;
}

/** null: never reaped. */
export async function loadReapPosition(db: pg.Pool | pg.ClientBase, table: QualifiedName): Promise<ReapPosition | null> {
  const { rows } = await db.query<PositionRow>({ ...readPosition(table), values: [positionKey(table)] });
  const row = rows[0];
  return row === undefined ? null : toPosition(row);
}

/** A row of session_janitor.reap_position, as readPosition and startPass return it. */
export interface PositionRow {
  pass: number;
  first_id: string;
  last_id: string;
  end_id: string;
  pass_started_at: string;
  pass_finished_at: string | null;
  pass_deleted: string;
}

export function toPosition(row: PositionRow): ReapPosition {
  return withFraction({
    pass: row.pass,
    firstId: Number(row.first_id),
    lastId: Number(row.last_id),
    endId: Number(row.end_id),
    passStartedAt: parseInstant(row.pass_started_at),
    passFinishedAt: row.pass_finished_at === null ? null : parseInstant(row.pass_finished_at),
    passDeleted: Number(row.pass_deleted),
  });
}

export function withFraction(position: Omit<ReapPosition, 'fraction'>): ReapPosition {
  const span = position.endId - position.firstId;
  const fraction = span <= 0 ? 1 : Math.min(1, Math.max(0, (position.lastId - position.firstId) / span));
  return { ...position, fraction };
}
