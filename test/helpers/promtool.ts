/** promtool (Debian's prometheus package) for the metric and alert-rule tests: fail, never skip. */
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export function promtool(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'promtool');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  assert.fail(
    'promtool is not on PATH: it lints the metrics and validates the alert rules. Install it (Debian: `apt-get install prometheus`, ' +
      'or `apt-get download prometheus && dpkg-deb -x prometheus_*.deb DIR` and add DIR/usr/bin to PATH; .ci/run does this).',
  );
}
