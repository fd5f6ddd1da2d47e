/**
 * A manual run's row in its queue's job history (db/sql/manual-runs.ts), kept up to date while the
 * run goes: inserted `active` at the start, each committed batch's rows added as the batch commits,
 * a heartbeat while a batch or a throttle pause lasts, `completed` or `failed` at the end. So the
 * rows of a run that fails, loses its connection or is killed with -9 are counted all the same.
 *
 * The writes go one at a time, each with the latest total (an absolute value: a write that failed
 * is made good by the next one). Only a kill in the instant between a batch's commit and its
 * write loses that one batch's count; the rows stay deleted.
 *
 * A run whose row cannot be written (pg-boss not installed) still runs: it says so on stderr.
 */
import { commandLine } from '../command-line.ts';
import { safeErrorMessage } from '../db/errors.ts';
import { finishManualRun, manualRunProgress, startManualRun } from '../db/sql/manual-runs.ts';
import type { QueueName } from '../queues.ts';
import type { RunOutput } from '../tasks/batching.ts';
import type { TaskContext } from '../tasks/context.ts';

export class ManualRunRecord {
  readonly #ctx: TaskContext;
  readonly #queue: QueueName;
  readonly #id: string;
  readonly #heartbeat: NodeJS.Timeout;
  #deleted = 0;
  #batches = 0;
  #written = 0;
  #writing: Promise<void> | null = null;
  #dirty = false;

  private constructor(ctx: TaskContext, queue: QueueName, id: string) {
    this.#ctx = ctx;
    this.#queue = queue;
    this.#id = id;
    // pg-boss's supervisor fails an active job whose heartbeat is older than heartbeat_seconds: a
    // long batch or a throttle pause must not look like a killed run.
    this.#heartbeat = setInterval(() => this.#flush(true), (ctx.config.heartbeatSeconds * 1000) / 2);
    this.#heartbeat.unref();
  }

  /** Inserts the row; null (said on stderr) when it cannot be written. */
  static async start(ctx: TaskContext, queue: QueueName): Promise<ManualRunRecord | null> {
    try {
      const { rows } = await ctx.pool.query<{ id: string }>({
        ...startManualRun(ctx.config.pgbossSchema),
        values: [queue, ctx.config.heartbeatSeconds],
      });
      const id = rows[0]?.id;
      if (id === undefined) throw new Error(`queue ${queue} does not exist in schema ${ctx.config.pgbossSchema}`);
      ctx.log.info({ queue, jobId: id }, 'this run is recorded in the job history of its queue');
      return new ManualRunRecord(ctx, queue, id);
    } catch (error) {
      process.stderr.write(
        `session-janitor: this run is not recorded in the job history (${safeErrorMessage(error)}): the last-success time and the dashboard do not show it; run \`${commandLine('migrate')}\`\n`,
      );
      return null;
    }
  }

  /** A batch committed `rows` deletes. */
  batch(rows: number): void {
    this.#deleted += rows;
    this.#batches += 1;
    if (rows > 0) this.#flush(false);
  }

  /** The run ended: `completed` with its output, or `failed` with the error. */
  async finish(result: { output: RunOutput } | { error: unknown }): Promise<void> {
    clearInterval(this.#heartbeat);
    while (this.#writing !== null) await this.#writing;
    const [state, output] =
      'output' in result
        ? ['completed', result.output]
        : ['failed', { error: 'run_failed', message: safeErrorMessage(result.error), deleted: this.#deleted, batches: this.#batches }];
    // Twice: when the server ended the run's connections (the very failure being recorded), the
    // first try may take an idle one the pool has not yet seen die; the pool then drops it, and the
    // second try opens a new one.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#ctx.pool.query({
          ...finishManualRun(this.#ctx.config.pgbossSchema),
          values: [this.#queue, this.#id, state, JSON.stringify(output), this.#deleted],
        });
        return;
      } catch (error) {
        if (attempt < 2) continue;
        this.#ctx.log.warn(
          { queue: this.#queue, jobId: this.#id, err: error },
          'could not record the end of this run: its deletes up to the last batch recorded are counted; pg-boss fails the row once its heartbeat is stale',
        );
        return;
      }
    }
  }

  #flush(heartbeat: boolean): void {
    if (this.#writing !== null) {
      this.#dirty = true;
      return;
    }
    if (!heartbeat && this.#written === this.#deleted) return;
    const deleted = this.#deleted;
    this.#writing = this.#ctx.pool
      .query({ ...manualRunProgress(this.#ctx.config.pgbossSchema), values: [this.#queue, this.#id, deleted] })
      .then(
        () => void (this.#written = Math.max(this.#written, deleted)),
        (error: unknown) =>
          this.#ctx.log.warn({ queue: this.#queue, jobId: this.#id, err: error }, 'could not record the progress of this run; the next batch tries again'),
      )
      .finally(() => {
        this.#writing = null;
        if (this.#dirty) {
          this.#dirty = false;
          this.#flush(false);
        }
      });
  }
}
