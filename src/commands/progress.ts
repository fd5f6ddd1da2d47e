/**
 * Progress of a foreground command: a line redrawn in place on a terminal, a log line every few
 * seconds otherwise (a Kubernetes Job's log, a CI run).
 */
import type { Logger } from '../logger.ts';
import type { Progress } from '../tasks/batching.ts';

const REDRAW_MS = 250;
const LOG_EVERY_MS = 5_000;

export function describeProgress(p: Progress, total: number | null, unit: string): string {
  const seconds = p.elapsedMs / 1000;
  const rate = seconds > 0 ? p.deleted / seconds : 0;
  const parts = [`${p.deleted.toLocaleString('en')} ${unit}`, `${Math.round(rate).toLocaleString('en')} rows/s`, `${p.batches} batches`];
  const fraction = p.fraction ?? (total !== null && total > 0 ? Math.min(1, p.deleted / total) : null);
  if (fraction !== null) {
    parts.push(`${(fraction * 100).toFixed(1)}%`);
    const done = fraction - (p.fractionAtStart ?? 0);
    if (done > 0 && fraction < 1) parts.push(`ETA ${formatSeconds((seconds / done) * (1 - fraction))}`);
  }
  return parts.join(', ');
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(Math.ceil(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

export function progressReporter(log: Logger, total: number | null, unit: string, stream: NodeJS.WriteStream = process.stderr) {
  let last = 0;
  let drawn = false;
  return {
    update(p: Progress) {
      const now = performance.now();
      if (stream.isTTY) {
        if (now - last < REDRAW_MS) return;
        stream.write(`\r\x1b[2K${describeProgress(p, total, unit)}`);
        drawn = true;
      } else {
        if (now - last < LOG_EVERY_MS) return;
        log.info({ ...p }, describeProgress(p, total, unit));
      }
      last = now;
    },
    done() {
      if (drawn) stream.write('\n');
    },
  };
}
