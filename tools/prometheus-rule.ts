/**
 * Renders the alert and recording rules of monitoring/prometheus/session-janitor.rules.yml (the one
 * source) for an installation:
 *
 *   node tools/prometheus-rule.ts                      # the PrometheusRule of k8s/base (as committed)
 *   node tools/prometheus-rule.ts --rules              # a plain Prometheus rules file
 *   node tools/prometheus-rule.ts \
 *     --selector 'job="auth/session-janitor"' \
 *     --runbook-url-base https://git.example.org/auth/session-janitor/-/blob/main/docs/runbook.md
 *
 * --selector replaces the label matcher every rule selects the workers' series by (the default is
 * what k8s/base/podmonitor.yaml's jobLabel produces); --runbook-url-base replaces the address every
 * runbook_url starts with (each alert appends its #anchor). Comments are kept. Writes to stdout, or
 * to --out FILE.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Document, isScalar, parseDocument, visit } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const RULES_FILE = join(root, 'monitoring', 'prometheus', 'session-janitor.rules.yml');

/** What the rules file is written with: the values --selector and --runbook-url-base replace. */
export const DEFAULT_SELECTOR = 'job="session-janitor"';
export const DEFAULT_RUNBOOK_URL_BASE = 'https://github.com/example/session-janitor/blob/main/docs/runbook.md';

export interface RenderOptions {
  readonly selector?: string;
  readonly runbookUrlBase?: string;
  /** A plain rules file instead of a PrometheusRule. */
  readonly rules?: boolean;
}

const PROMETHEUS_RULE_HEADER = [
  ' Generated from monitoring/prometheus/session-janitor.rules.yml by tools/prometheus-rule.ts: edit',
  ' that file and run `node tools/prometheus-rule.ts --out k8s/base/prometheusrule.yaml`',
  ' (test/monitoring/rules.test.ts fails when the two differ). The runbook is docs/runbook.md.',
].join('\n');

function substitute(doc: Document, selector: string, runbookUrlBase: string): void {
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string') return;
      node.value = node.value.replaceAll(DEFAULT_SELECTOR, selector).replaceAll(`${DEFAULT_RUNBOOK_URL_BASE}#`, `${runbookUrlBase}#`);
    },
  });
}

export function render(options: RenderOptions = {}): string {
  const selector = options.selector ?? DEFAULT_SELECTOR;
  const runbookUrlBase = (options.runbookUrlBase ?? DEFAULT_RUNBOOK_URL_BASE).replace(/#.*$/, '');
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"(\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*")*$/.test(selector)) {
    throw new Error(`--selector must be label matchers such as job="session-janitor", got ${selector}`);
  }
  if (!/^https?:\/\/\S+$/.test(runbookUrlBase)) throw new Error(`--runbook-url-base must be an http(s) URL, got ${runbookUrlBase}`);
  const rules = parseDocument(readFileSync(RULES_FILE, 'utf8'));
  substitute(rules, selector, runbookUrlBase);
  const toString = { lineWidth: 0 } as const;
  if (options.rules === true) return rules.toString(toString);
  const groups = rules.get('groups', true);
  if (groups === undefined || isScalar(groups)) throw new Error(`${RULES_FILE} has no groups`);
  const out = new Document({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'session-janitor', labels: { 'app.kubernetes.io/name': 'session-janitor' } },
    spec: {},
  });
  out.setIn(['spec', 'groups'], groups);
  out.commentBefore = PROMETHEUS_RULE_HEADER;
  return out.toString(toString);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      selector: { type: 'string' },
      'runbook-url-base': { type: 'string' },
      rules: { type: 'boolean' },
      out: { type: 'string' },
    },
  });
  const text = render({ selector: values.selector, runbookUrlBase: values['runbook-url-base'], rules: values.rules });
  if (values.out === undefined) process.stdout.write(text);
  else writeFileSync(values.out, text);
}
