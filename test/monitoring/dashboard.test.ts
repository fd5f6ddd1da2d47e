/**
 * The Grafana dashboard: it parses, uses a Prometheus datasource variable, queries only metrics the
 * worker really exports (read from a scrape of the app's own registry, plus `up`), has a panel per
 * topic, and aggregates correctly over pods (max of the cluster-wide gauges, rate/increase of counters).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createMetrics } from '../../src/metrics.ts';
import { grafanaSchemaErrors } from '../helpers/grafana-schema.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dashboardFile = join(root, 'monitoring', 'grafana', 'session-janitor.json');

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}

interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

interface TemplateVariable {
  name: string;
  type: string;
  query?: unknown;
}

interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: TemplateVariable[] };
}

function loadDashboard(): Dashboard {
  return JSON.parse(readFileSync(dashboardFile, 'utf8')) as Dashboard;
}

/** Every panel, rows' nested panels included, rows themselves excluded. */
function allPanels(dashboard: Dashboard): Panel[] {
  const out: Panel[] = [];
  const visit = (panels: readonly Panel[]) => {
    for (const panel of panels) {
      if (panel.type !== 'row') out.push(panel);
      if (panel.panels) visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  return out;
}

function exprsOf(panel: Panel): string[] {
  return (panel.targets ?? []).map((t) => t.expr ?? '').filter((e) => e !== '');
}

const STRINGS = /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g;

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads: string literals, label matchers, ranges, grouping
 * clauses, functions (an identifier followed by a parenthesis), keywords, numbers and Grafana
 * variables are dropped; what is left are metric names.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(STRINGS, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = match[0];
    const start = match.index;
    const before = start > 0 ? stripped.charAt(start - 1) : '';
    if (/[0-9.$]/.test(before)) continue; // 1e9, 5m, $variable
    if (/^\s*\(/.test(stripped.slice(start + name.length))) continue; // a function or an aggregation
    if (KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names].sort();
}

/** The families of a real scrape of the app's registry: name -> type, from the # TYPE lines. */
async function scrapedFamilies(): Promise<Map<string, string>> {
  const metrics = createMetrics();
  const text = await metrics.registry.metrics();
  const families = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (match?.[1] && match[2]) families.set(match[1], match[2]);
  }
  families.set('up', 'gauge'); // written by Prometheus for every target
  // The recordings of the shipped rules (the objectives' error ratios) are series Prometheus writes.
  const rules = readFileSync(join(root, 'monitoring', 'prometheus', 'session-janitor.rules.yml'), 'utf8');
  for (const [, record] of rules.matchAll(/- record: (\S+)/g)) if (record) families.set(record, 'gauge');
  return families;
}

/** The family a sample name belongs to: histograms and summaries expose _bucket, _sum and _count. */
function familyOf(name: string, families: ReadonlyMap<string, string>): string | undefined {
  if (families.has(name)) return name;
  const match = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (match?.[1]) {
    const type = families.get(match[1]);
    if (type === 'histogram' || (type === 'summary' && match[2] !== 'bucket')) return match[1];
  }
  return undefined;
}

/** Gauges every pod reports with the same cluster-wide value (read from the database). */
const CLUSTER_GAUGES = [
  'session_janitor_last_success_timestamp_seconds',
  'session_janitor_expired_backlog_oldest_seconds',
  'session_janitor_expired_backlog_sessions',
  'session_janitor_queue_jobs',
];

/** The text before each occurrence of a metric name in an expression (string literals blanked). */
function contextsOf(expr: string, name: string): string[] {
  const blanked = expr.replace(STRINGS, '""');
  const contexts: string[] = [];
  for (const match of blanked.matchAll(new RegExp(`(?<![A-Za-z0-9_:])${name}(?![A-Za-z0-9_:])`, 'g'))) {
    contexts.push(blanked.slice(0, match.index));
  }
  return contexts;
}

const normalise = (expr: string) => expr.replace(/\s+/g, ' ');

describe('Grafana dashboard', () => {
  test('metricNames extracts metric names only', () => {
    assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, task) (rate(a_bucket{job="x", pod=~"$pod"}[$__rate_interval])))'), ['a_bucket']);
    assert.deepEqual(metricNames('time() - max by (task) (b{job="by"}) > 1e9 and on() c offset 5m'), ['b', 'c']);
    assert.deepEqual(metricNames('sum(rate(d_total[5m])) / sum without (pod) (rate(e_total[5m]))'), ['d_total', 'e_total']);
  });

  test('parses as a dashboard with a Prometheus datasource variable used by every panel', () => {
    const dashboard = loadDashboard();
    assert.equal(typeof dashboard.title, 'string');
    assert.equal(typeof dashboard.uid, 'string');
    assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion}`);
    const datasource = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.ok(datasource, 'no `datasource` template variable');
    assert.equal(datasource.type, 'datasource');
    assert.equal(datasource.query, 'prometheus');
    // Multi-cluster Prometheus (Thanos, Mimir): pick the cluster, then the installation.
    const names = dashboard.templating.list.map((v) => v.name);
    assert.deepEqual(
      names.filter((n) => ['cluster', 'namespace', 'pod'].includes(n)),
      ['cluster', 'namespace', 'pod'],
      'the cluster, namespace and pod variables, in that order',
    );
    const ids = new Set<number>();
    for (const panel of allPanels(dashboard)) {
      assert.equal(panel.datasource?.uid, '${datasource}', `panel "${panel.title}" does not use $datasource`);
      assert.ok(typeof panel.id === 'number' && !ids.has(panel.id), `panel "${panel.title}": missing or duplicate id`);
      ids.add(panel.id);
      assert.ok(exprsOf(panel).length > 0, `panel "${panel.title}" has no query`);
      for (const target of panel.targets ?? []) {
        assert.equal(target.datasource?.uid, '${datasource}', `panel "${panel.title}": a target does not use $datasource`);
      }
    }
  });

  test('every query selects the chosen cluster and namespace', () => {
    for (const panel of allPanels(loadDashboard())) {
      for (const expr of exprsOf(panel)) {
        for (const [, matchers] of expr.matchAll(/[a-z_:]+\{([^}]*)\}/g)) {
          assert.match(matchers ?? '', /cluster=~"\$cluster", namespace="\$namespace"/, `${panel.title}: ${expr}`);
        }
      }
    }
  });

  test('validates against @grafana/schema without a single error', () => {
    const text = readFileSync(dashboardFile, 'utf8');
    const errors = grafanaSchemaErrors(text);
    assert.deepEqual(errors, [], errors.map((e) => `line ${e.line}: ${e.message}`).join('\n'));
    // The check itself sees what Grafana's schema forbids: an empty variable selection, a legend without calcs.
    const broken = JSON.parse(text) as Dashboard & { templating: { list: Array<Record<string, unknown>> } };
    const first = broken.templating.list[0];
    assert.ok(first);
    first.current = {};
    const legend = allPanels(broken)
      .map((panel) => (panel as Panel & { options?: { legend?: Record<string, unknown> } }).options?.legend)
      .find((l) => l !== undefined);
    assert.ok(legend);
    delete legend.calcs;
    const found = grafanaSchemaErrors(JSON.stringify(broken, null, 2)).map((e) => e.message);
    assert.ok(
      found.some((m) => /text, value/.test(m)),
      found.join('\n'),
    );
    assert.ok(
      found.some((m) => /'calcs' is missing/.test(m)),
      found.join('\n'),
    );
  });

  test('queries only metrics that a scrape of the worker exposes (plus up)', async () => {
    const families = await scrapedFamilies();
    const unknown: string[] = [];
    for (const panel of allPanels(loadDashboard())) {
      for (const expr of exprsOf(panel)) {
        for (const name of metricNames(expr)) {
          if (familyOf(name, families) === undefined) unknown.push(`${panel.title}: ${name}`);
        }
      }
    }
    assert.deepEqual(unknown, [], `metrics the worker does not export:\n${unknown.join('\n')}`);
  });

  test('has a panel for each topic', () => {
    const panels = allPanels(loadDashboard()).map((panel) => ({
      title: panel.title ?? '',
      query: normalise(exprsOf(panel).join('\n')),
    }));
    const topics: Array<[string, (q: string) => boolean]> = [
      ['deletion rate by reason', (q) => /sum by \(reason\) \(rate\(session_janitor_sessions_deleted_total\b/.test(q)],
      ['sessions deleted (increase)', (q) => /increase\(session_janitor_sessions_deleted_total\b/.test(q)],
      [
        'batch duration p50 and p99 by task',
        (q) =>
          /histogram_quantile\(0\.5, sum by \(le, task\) \(rate\(session_janitor_batch_duration_seconds_bucket\b/.test(q) &&
          /histogram_quantile\(0\.99, sum by \(le, task\) \(rate\(session_janitor_batch_duration_seconds_bucket\b/.test(q),
      ],
      ['job outcomes by queue and outcome', (q) => /sum by \(queue, outcome\) \(rate\(session_janitor_jobs_total\b/.test(q)],
      [
        'job duration p50 and p99 by queue',
        (q) =>
          /histogram_quantile\(0\.5, sum by \(le, queue\) \(rate\(session_janitor_job_duration_seconds_bucket\b/.test(q) &&
          /histogram_quantile\(0\.99, sum by \(le, queue\) \(rate\(session_janitor_job_duration_seconds_bucket\b/.test(q),
      ],
      ['queue depths by queue and state', (q) => /max by \(queue, state\) \(session_janitor_queue_jobs\b/.test(q)],
      ['dead-letter queue', (q) => /session_janitor_queue_jobs\{[^}]*queue="refresh-session\.dead-letter"/.test(q)],
      ['expired backlog', (q) => /max\(session_janitor_expired_backlog_sessions\b/.test(q)],
      ['oldest expired session', (q) => /max\(session_janitor_expired_backlog_oldest_seconds\b/.test(q)],
      ['last success age by task', (q) => /time\(\) - max by \(task\) \(session_janitor_last_success_timestamp_seconds\b/.test(q)],
      ['resident memory by pod', (q) => /by \(pod\) \(process_resident_memory_bytes\b/.test(q)],
      ['event-loop lag p99 by pod', (q) => /by \(pod\) \(nodejs_eventloop_lag_p99_seconds\b/.test(q)],
      ['revocation latency p99', (q) => /histogram_quantile\(0\.99, sum by \(le\) \(rate\(session_janitor_revocation_latency_seconds_bucket\b/.test(q)],
      ['revocations within the objective', (q) => /le="60"/.test(q) && /increase\(session_janitor_revocation_latency_seconds_count\b/.test(q)],
      [
        'error budget burn rates',
        (q) => /session_janitor:revocation_latency:error_ratio_rate1h\b/.test(q) && /session_janitor:purge_freshness:error_ratio_avg1h\b/.test(q),
      ],
      ['workers that can use the database', (q) => /sum\(session_janitor_database_up\b/.test(q)],
      ['errors by kind', (q) => /sum by \(kind\) \(rate\(session_janitor_errors_total\b/.test(q)],
      ['time held back by task and reason', (q) => /sum by \(task, reason\) \(rate\(session_janitor_held_back_seconds_total\b/.test(q)],
    ];
    const missing = topics.filter(([, matches]) => !panels.some((p) => matches(p.query))).map(([topic]) => topic);
    assert.deepEqual(missing, [], `no panel for: ${missing.join(', ')}`);
  });

  test('one row per table, templated: a row repeated over the table variable (not copied panels), its panels filtered by $table', () => {
    const dashboard = loadDashboard();
    const variable = dashboard.templating.list.find((v) => v.name === 'table') as (Record<string, unknown> & { query?: { query?: string } }) | undefined;
    assert.ok(variable, 'no `table` template variable');
    assert.match(variable.query?.query ?? '', /^label_values\(session_janitor_rows_deleted_total\{[^}]*\}, table\)$/);
    assert.equal(variable.includeAll, true);
    assert.equal(variable.multi, true);
    const top = dashboard.panels as Array<Panel & { type?: string; repeat?: string }>;
    const rows = top.filter((p) => p.type === 'row' && p.repeat === 'table');
    assert.equal(rows.length, 1, 'exactly one row repeated over $table');
    const start = top.indexOf(rows[0] as Panel & { type?: string });
    const next = top.findIndex((p, i) => i > start && p.type === 'row');
    const inside = top.slice(start + 1, next < 0 ? undefined : next);
    const queries = inside.flatMap((p) => exprsOf(p)).map(normalise);
    for (const [topic, pattern] of [
      ['rows deleted per second by reason', /sum by \(reason\) \(rate\(session_janitor_rows_deleted_total\{[^}]*table="\$table"/],
      ['rows deleted in the range by reason', /sum by \(reason\) \(increase\(session_janitor_rows_deleted_total\{[^}]*table="\$table"/],
      ['backlog', /max\(session_janitor_table_backlog_rows\{[^}]*table="\$table"/],
      ['oldest purgeable row', /max\(session_janitor_table_backlog_oldest_seconds\{[^}]*table="\$table"/],
    ] as const) {
      assert.ok(
        queries.some((q) => pattern.test(q)),
        `the table row has no panel for ${topic}`,
      );
    }
    // Templated, not copied: no other panel names a table.
    const named = allPanels(dashboard)
      .flatMap((p) => exprsOf(p))
      .filter((q) => /table="(?!\$table")/.test(q));
    assert.deepEqual(named, []);
  });

  test('cluster-wide gauges are combined with max, counters are wrapped in rate or increase', async () => {
    const families = await scrapedFamilies();
    const problems: string[] = [];
    for (const panel of allPanels(loadDashboard())) {
      for (const expr of exprsOf(panel)) {
        for (const name of metricNames(expr)) {
          const family = familyOf(name, families);
          const type = family === undefined ? undefined : families.get(family);
          const counterLike = type === 'counter' || (family !== name && (type === 'histogram' || type === 'summary'));
          for (const before of contextsOf(expr, name)) {
            if (family !== undefined && CLUSTER_GAUGES.includes(family) && !/\bmax\s*(?:by\s*\([^)]*\)\s*)?\(\s*$/.test(before)) {
              problems.push(`${panel.title}: ${name} is not inside max(...) or max by (...) (...)`);
            }
            if (counterLike && !/\b(?:rate|irate|increase)\s*\(\s*$/.test(before)) {
              problems.push(`${panel.title}: counter ${name} is not inside rate(...) or increase(...)`);
            }
          }
        }
      }
    }
    assert.deepEqual(problems, [], problems.join('\n'));
  });
});
