/**
 * The app's own metrics: promtool's linter accepts them (prom-client's default Node.js metrics are
 * left out: promtool rejects their gauges named *_total, which we do not control), every metric of
 * the public contract exists with exactly its type and labels, and every HELP text says something
 * useful.
 *
 * promtool comes from PATH or Debian's prometheus package (test/helpers/promtool.ts): where
 * neither works these tests fail, they never skip.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promtool } from '../helpers/promtool.ts';
import { createMetrics, DELETE_REASONS, ERROR_KINDS, HELD_BACK_REASONS, JOB_OUTCOMES, TASKS } from '../../src/metrics.ts';
import { ALL_QUEUES } from '../../src/queues.ts';
import { PAUSE_TASKS } from '../../src/tasks/pause.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The public contract, docs/CONTRACT.md: its Metrics table is what this test holds the registry to. */
const CONTRACT_METRICS_TABLE = readFileSync(join(root, 'docs', 'CONTRACT.md'), 'utf8');

interface ContractMetric {
  name: string;
  type: string;
  /** label name -> the values the contract lists (empty: any value, e.g. queue names). */
  labels: Map<string, string[]>;
}

/** The rows of a Markdown table whose first cell is a backticked session_janitor_ metric name. */
function parseContractMetrics(markdown: string): ContractMetric[] {
  const out: ContractMetric[] = [];
  for (const line of markdown.split('\n')) {
    const cells = line
      // A NUL stands in for an escaped pipe while the row is split at the others.
      .replace(/\\\|/g, '\u0000')
      .split('|')
      // eslint-disable-next-line no-control-regex
      .map((cell) => cell.replace(/\u0000/g, '|').trim());
    // '', name, type, labels, ''
    const name = /^`(session_janitor_[a-z0-9_]+)`$/.exec(cells[1] ?? '')?.[1];
    if (!name) continue;
    const labels = new Map<string, string[]>();
    const labelCell = (cells[3] ?? '').split(';')[0] ?? '';
    if (!/^none\b/.test(labelCell)) {
      for (const part of labelCell.split(',')) {
        const match = /^\s*`([a-z_][a-z0-9_]*)`(?:\s*=\s*(.*))?$/.exec(part);
        if (!match?.[1]) continue;
        const values = [...(match[2] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? '');
        labels.set(match[1], values);
      }
    }
    out.push({ name, type: cells[2] ?? '', labels });
  }
  return out;
}

const QUEUE_STATES = ['queued', 'active', 'deferred', 'failed'] as const;
const SCHEDULED_TASKS = ['purge-expired', 'reap-idle'] as const;

/** A registry where every metric of the app has a sample for each of its label values. */
async function populatedScrape(): Promise<string> {
  const m = createMetrics();
  for (const reason of DELETE_REASONS) m.sessionsDeleted.inc({ reason }, 1000);
  for (const task of TASKS) m.batchDuration.observe({ task }, 0.02);
  for (const queue of ALL_QUEUES) {
    for (const outcome of JOB_OUTCOMES) m.jobs.inc({ queue, outcome });
    m.jobDuration.observe({ queue }, 1.5);
    for (const state of QUEUE_STATES) m.queueJobs.set({ queue, state }, 2);
  }
  for (const task of SCHEDULED_TASKS) m.lastSuccess.set({ task }, 1_764_300_000);
  m.expiredBacklogOldest.set(120);
  m.expiredBacklogSessions.set(42);
  for (const kind of ERROR_KINDS) m.errors.inc({ kind });
  return m.registry.metrics();
}

interface Family {
  name: string;
  type: string;
  help: string;
  lines: string[];
  samples: Array<{ name: string; labels: Map<string, string> }>;
}

/** The metric families of a text exposition, in order, each with its own lines. */
function families(text: string): Family[] {
  const byName = new Map<string, Family>();
  const get = (name: string): Family => {
    let family = byName.get(name);
    if (!family) {
      family = { name, type: '', help: '', lines: [], samples: [] };
      byName.set(name, family);
    }
    return family;
  };
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta?.[2]) {
      current = get(meta[2]);
      if (meta[1] === 'HELP') current.help = meta[3] ?? '';
      else current.type = meta[3] ?? '';
      current.lines.push(line);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    assert.ok(sample?.[1], `unparsable exposition line: ${line}`);
    assert.ok(current && sample[1].startsWith(current.name), `sample ${sample[1]} outside its family`);
    const labels = new Map<string, string>();
    for (const pair of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels.set(pair[1] ?? '', pair[2] ?? '');
    }
    current.lines.push(line);
    current.samples.push({ name: sample[1], labels });
  }
  return [...byName.values()];
}

const own = (all: Family[]) => all.filter((f) => f.name.startsWith('session_janitor_'));

describe('metrics lint', () => {
  test('every metric of the app has samples once each label value was used', async () => {
    const empty = own(families(await populatedScrape()))
      .filter((f) => f.samples.length === 0)
      .map((f) => f.name);
    assert.deepEqual(empty, [], `observe these in populatedScrape(): ${empty.join(', ')}`);
  });

  test('promtool check metrics accepts the app metrics', async () => {
    const text = `${own(families(await populatedScrape()))
      .flatMap((f) => f.lines)
      .join('\n')}\n`;
    assert.match(text, /^session_janitor_queue_jobs\{/m);
    const result = spawnSync(promtool(), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
    if (result.error) throw result.error;
    const output = `${result.stdout}${result.stderr}`.trim();
    assert.equal(result.status, 0, output);
    assert.equal(output, '', `promtool reported problems:\n${output}`);
  });

  test('every contract metric exists with exactly its type and labels', async () => {
    const scraped = new Map(own(families(await populatedScrape())).map((f) => [f.name, f]));
    const contract = parseContractMetrics(CONTRACT_METRICS_TABLE);
    // Both ways: every metric the app exports is a documented public name.
    assert.deepEqual(contract.map((m) => m.name).sort(), [...scraped.keys()].sort(), 'docs/CONTRACT.md lists exactly the metrics the app exports');
    for (const metric of contract) {
      const family = scraped.get(metric.name);
      assert.ok(family, `${metric.name} is not exported`);
      assert.equal(family.type, metric.type, `${metric.name}: type`);
      const expected = [...metric.labels.keys()].sort();
      for (const sample of family.samples) {
        const names = [...sample.labels.keys()].filter((l) => !(sample.name.endsWith('_bucket') && l === 'le')).sort();
        assert.deepEqual(names, expected, `${sample.name}: labels`);
      }
    }
  });

  test('the label values of the contract are the ones the app uses', () => {
    const contract = new Map(parseContractMetrics(CONTRACT_METRICS_TABLE).map((m) => [m.name, m.labels]));
    const values = (metric: string, label: string) => [...(contract.get(metric)?.get(label) ?? [])].sort();
    assert.deepEqual(values('session_janitor_sessions_deleted_total', 'reason'), [...DELETE_REASONS].sort());
    assert.deepEqual(values('session_janitor_batch_duration_seconds', 'task'), [...TASKS].sort());
    assert.deepEqual(values('session_janitor_jobs_total', 'outcome'), [...JOB_OUTCOMES].sort());
    assert.deepEqual(values('session_janitor_last_success_timestamp_seconds', 'task'), [...SCHEDULED_TASKS].sort());
    assert.deepEqual(values('session_janitor_queue_jobs', 'state'), [...QUEUE_STATES].sort());
    assert.deepEqual(values('session_janitor_held_back_seconds_total', 'task'), [...SCHEDULED_TASKS].sort());
    assert.deepEqual(values('session_janitor_stalled_runs_total', 'task'), [...SCHEDULED_TASKS].sort());
    for (const pause of ['session_janitor_paused_until_timestamp_seconds', 'session_janitor_paused_since_timestamp_seconds', 'session_janitor_pause_renewals'])
      assert.deepEqual(values(pause, 'task'), [...PAUSE_TASKS].sort());
    assert.deepEqual(values('session_janitor_blast_radius_stopped', 'task'), [...SCHEDULED_TASKS].sort());
    assert.deepEqual(values('session_janitor_held_back_seconds_total', 'reason'), [...HELD_BACK_REASONS].sort());
    assert.deepEqual(values('session_janitor_errors_total', 'kind'), [...ERROR_KINDS].sort());
  });

  test('every HELP text is useful: long enough, and names a unit or what to do', async () => {
    const unitOrAction = /\b(seconds?|unix time|bytes|sessions|jobs|rows|errors|per second|rate it|alert|means|needs a human|read the logs)\b/i;
    for (const family of own(families(await populatedScrape()))) {
      assert.ok(family.help.length >= 40, `${family.name}: HELP too short: "${family.help}"`);
      assert.notEqual(family.help.toLowerCase().replace(/[^a-z]/g, ''), family.name.replace(/[^a-z]/g, ''));
      assert.match(family.help, unitOrAction, `${family.name}: HELP names no unit and no action: "${family.help}"`);
    }
  });
});
