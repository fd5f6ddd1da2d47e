/**
 * The alert rules: promtool validates and unit-tests them, the PrometheusRule carries exactly the
 * same groups, and every alert is labelled, annotated and documented in docs/runbook.md.
 *
 * promtool comes from PATH or Debian's prometheus package (test/helpers/promtool.ts): where
 * neither works these tests fail, they never skip.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promtool } from '../helpers/promtool.ts';
import { DEFAULT_RUNBOOK_URL_BASE, render } from '../../tools/prometheus-rule.ts';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const rulesDir = join(root, 'monitoring', 'prometheus');
const rulesFile = join(rulesDir, 'session-janitor.rules.yml');
const rulesTestFile = join(rulesDir, 'session-janitor.rules.test.yml');
const prometheusRuleFile = join(root, 'k8s', 'base', 'prometheusrule.yaml');
const runbookFile = join(root, 'docs', 'runbook.md');

const RUNBOOK_URL = DEFAULT_RUNBOOK_URL_BASE;

function run(args: readonly string[], cwd: string): { status: number | null; output: string } {
  const result = spawnSync(promtool(), args, { cwd, encoding: 'utf8', timeout: 300_000 });
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

interface AlertRule {
  alert: string;
  record?: undefined;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RecordingRule {
  record: string;
  alert?: undefined;
  expr: string;
}

interface RuleGroup {
  name: string;
  rules: Array<AlertRule | RecordingRule>;
}

interface AlertRuleTest {
  alertname: string;
  exp_alerts?: unknown[] | null;
}

interface RulesTestFile {
  tests: Array<{ name?: string; alert_rule_test?: AlertRuleTest[] }>;
}

function readYaml(file: string): unknown {
  return parse(readFileSync(file, 'utf8'));
}

function plainGroups(): RuleGroup[] {
  const doc = readYaml(rulesFile) as { groups: RuleGroup[] };
  return doc.groups;
}

function alerts(): AlertRule[] {
  return plainGroups()
    .flatMap((group) => group.rules)
    .filter((rule): rule is AlertRule => rule.alert !== undefined);
}

/** The metrics an expression selects (`name{matchers}` or `name[range]`) and their matchers. */
function selectors(expr: string): Array<{ metric: string; matchers: string }> {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\}|(?=\[))/g)].map((m) => ({ metric: m[1] ?? '', matchers: m[2] ?? '' }));
}

/** GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens. */
function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

describe('alert rules', () => {
  test('promtool check rules accepts the rules file', () => {
    const { status, output } = run(['check', 'rules', rulesFile], rulesDir);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS/, output);
  });

  test('promtool test rules passes every unit test', () => {
    const { status, output } = run(['test', 'rules', rulesTestFile], rulesDir);
    assert.equal(status, 0, output);
    assert.match(output, /SUCCESS/, output);
  });

  test('every alert has a firing and a silent unit test', () => {
    const doc = readYaml(rulesTestFile) as RulesTestFile;
    const cases = doc.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of alerts()) {
      const mine = cases.filter((c) => c.alertname === alert);
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${alert}: no promtool case where it fires`,
      );
      assert.ok(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${alert}: no promtool case where it stays silent (exp_alerts: [])`,
      );
    }
  });

  test('the PrometheusRule is generated from the rules file and carries exactly its groups', () => {
    assert.equal(
      readFileSync(prometheusRuleFile, 'utf8'),
      render(),
      'k8s/base/prometheusrule.yaml is stale: node tools/prometheus-rule.ts --out k8s/base/prometheusrule.yaml',
    );
    const doc = readYaml(prometheusRuleFile) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string; labels: Record<string, string> };
      spec: { groups: RuleGroup[] };
    };
    assert.equal(doc.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(doc.kind, 'PrometheusRule');
    assert.equal(doc.metadata.name, 'session-janitor');
    assert.equal(doc.metadata.labels['app.kubernetes.io/name'], 'session-janitor');
    assert.deepEqual(doc.spec.groups, plainGroups());
    // Types, enums, required fields and patterns (e.g. of `for`) of the operator's CRD.
    assert.doesNotThrow(() => new PrometheusRule(doc).validate());
  });

  test('every rule selects the workers by job="session-janitor" (or reads a recording of them), every alert is named SessionJanitor*', () => {
    for (const group of plainGroups()) {
      for (const rule of group.rules) {
        const name = rule.alert ?? rule.record;
        if (rule.record !== undefined) assert.match(rule.record, /^session_janitor:[a-z_]+:[a-z0-9_]+$/, `recording ${rule.record}: level:metric:operation`);
        const found = selectors(rule.expr);
        assert.ok(found.length > 0 || /session_janitor:[a-z_]+:/.test(rule.expr), `${name} selects nothing`);
        for (const { metric, matchers } of found) {
          if (metric.startsWith('session_janitor:')) continue;
          assert.match(matchers, /(^|, )job="session-janitor"/, `${name}: ${metric} is not selected by job="session-janitor"`);
        }
        // Installations stay apart: no aggregation over every cluster and namespace at once.
        for (const aggregation of rule.expr.matchAll(/\b(max|min|sum|count|avg)\b\s*(by\s*\(([^)]*)\))?\s*\(/g)) {
          assert.match(aggregation[3] ?? '', /cluster, namespace/, `${name}: ${aggregation[0]} does not keep cluster and namespace`);
        }
      }
    }
    const names = new Set<string>();
    for (const rule of alerts()) {
      assert.match(rule.alert, /^SessionJanitor[A-Z][A-Za-z]+$/);
      assert.ok(!names.has(rule.alert), `duplicate alert ${rule.alert}`);
      names.add(rule.alert);
      assert.ok(rule.for !== undefined, `${rule.alert} has no \`for\``);
    }
    assert.ok(names.size >= 6, `expected at least 6 alerts, got ${[...names].join(', ')}`);
  });

  test('every alert has a severity, a summary, a description with its value and a runbook link', () => {
    for (const rule of alerts()) {
      const severity = rule.labels?.severity;
      assert.ok(severity === 'critical' || severity === 'warning', `${rule.alert}: severity ${String(severity)}`);
      const summary = rule.annotations?.summary ?? '';
      const description = rule.annotations?.description ?? '';
      assert.ok(summary.length >= 15, `${rule.alert}: summary missing or too short`);
      assert.ok(description.length >= 40, `${rule.alert}: description missing or too short`);
      assert.equal(rule.annotations?.runbook_url, `${RUNBOOK_URL}#${rule.alert.toLowerCase()}`, `${rule.alert}: runbook_url`);
    }
    // Numbers in the descriptions wherever the value is a number worth reading.
    // Their value is a constant (absent()'s 1, an all-zero max): nothing worth showing.
    for (const rule of alerts().filter((r) => !['SessionJanitorNoWorkerUp', 'SessionJanitorDatabaseUnusable'].includes(r.alert))) {
      assert.match(rule.annotations?.description ?? '', /\{\{ \$value/, `${rule.alert}: the description does not show $value`);
    }
  });

  test('another installation renders its own selector and runbook URL base, and promtool accepts the result', () => {
    const base = 'https://git.example.org/auth/session-janitor/-/blob/main/docs/runbook.md';
    const rendered = render({ rules: true, selector: 'job="auth/session-janitor"', runbookUrlBase: base });
    const dir = mkdtempSync(join(tmpdir(), 'sj-rules-'));
    try {
      const file = join(dir, 'rules.yml');
      writeFileSync(file, rendered);
      const { status, output } = run(['check', 'rules', file], dir);
      assert.equal(status, 0, output);
      const groups = (parse(rendered) as { groups: RuleGroup[] }).groups;
      const rendered_alerts = groups.flatMap((g) => g.rules).filter((r): r is AlertRule => r.alert !== undefined);
      assert.equal(rendered_alerts.length, alerts().length);
      for (const rule of rendered_alerts) assert.equal(rule.annotations?.runbook_url, `${base}#${rule.alert.toLowerCase()}`);
      for (const rule of groups.flatMap((g) => g.rules)) {
        for (const { metric, matchers } of selectors(rule.expr)) {
          if (!metric.startsWith('session_janitor:')) assert.match(matchers, /job="auth\/session-janitor"/, `${metric} in ${rule.expr}`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.throws(() => render({ selector: 'session-janitor' }), /label matchers/);
  });

  test('the paging alerts are the no-worker, database-unusable, purge-stalled and fast revocation-latency burn ones', () => {
    const critical = alerts()
      .filter((r) => r.labels?.severity === 'critical')
      .map((r) => r.alert)
      .sort();
    assert.deepEqual(critical, [
      'SessionJanitorDatabaseUnusable',
      'SessionJanitorNoWorkerUp',
      'SessionJanitorPurgeStalled',
      'SessionJanitorRevocationLatencyBudgetBurnFast',
    ]);
  });

  test('docs/runbook.md has a section for each alert, at the anchor its runbook_url names', () => {
    const runbook = readFileSync(runbookFile, 'utf8');
    const anchors = new Set(
      runbook
        .split('\n')
        .filter((line) => /^#{2,3} /.test(line))
        .map((line) => githubAnchor(line.replace(/^#+ /, ''))),
    );
    for (const rule of alerts()) {
      const heading = new RegExp(`^#{2,3} ${rule.alert}\\s*$`, 'm');
      assert.match(runbook, heading, `docs/runbook.md has no heading "## ${rule.alert}"`);
      const anchor = (rule.annotations?.runbook_url ?? '').split('#')[1] ?? '';
      assert.ok(anchors.has(anchor), `${rule.alert}: anchor #${anchor} is not a heading of docs/runbook.md`);
    }
  });
});
