/**
 * `kubectl` for test/runbook.test.ts, which runs the runbook's shell lines verbatim with this first on
 * PATH: there is no cluster here, so this stands in for one, built from real parts.
 *
 * 1. The real kubectl parses the arguments against a server that refuses connections: a wrong flag,
 *    subcommand or resource syntax fails there with kubectl's own message, as it would for a reader.
 * 2. Every `deploy/NAME`, and every `-l` selector, must name what `kubectl kustomize k8s/base` renders.
 * 3. What the cluster would answer comes from the test's real worker: `logs` prints its log lines,
 *    `get configmap -o yaml` the rendered ConfigMap, `exec ... -- node dist/cli.js ARGS` runs the CLI
 *    (the image's dist/ is built from this src/) against the test database, `exec ... -- node -e`
 *    runs the script here (the pod's 127.0.0.1:9464 is the test worker's metrics port).
 *    Everything else (get, describe, rollout, scale, delete, port-forward) prints nothing.
 *
 * Its settings come from SJ_FAKE_* variables the test sets; a line it cannot stand in for exits 2.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Manifest {
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly spec?: { readonly template?: { readonly metadata?: { readonly labels?: Record<string, string> } } };
}

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) refuse(`${name} is unset`);
  return value;
};

function refuse(message: string): never {
  process.stderr.write(`fake kubectl: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const dashes = args.indexOf('--');
const own = dashes === -1 ? args : args.slice(0, dashes);
const inPod = dashes === -1 ? [] : args.slice(dashes + 1);

// 1. The real kubectl's parser, against nothing.
const parsed = spawnSync(
  env('SJ_FAKE_REAL_KUBECTL'),
  [`--kubeconfig=${env('SJ_FAKE_KUBECONFIG')}`, `--cache-dir=${env('SJ_FAKE_KUBECONFIG')}.cache`, '--request-timeout=2s', ...args],
  {
    encoding: 'utf8',
    timeout: 20_000,
  },
);
if (!/connection refused|Unable to connect to the server|dial tcp/i.test(parsed.stderr)) {
  refuse(`kubectl ${args.join(' ')} did not get as far as the server: ${parsed.stderr.trim() || `exit ${parsed.status}`}`);
}

// 2. The names and selectors, against the manifests.
const manifests = JSON.parse(readFileSync(env('SJ_FAKE_MANIFESTS'), 'utf8')) as Manifest[];
for (const word of own) {
  const match = /^(?:deploy|deployment)\/(.+)$/.exec(word);
  if (match && !manifests.some((m) => m.kind === 'Deployment' && m.metadata.name === match[1])) refuse(`no Deployment ${match[1]} in k8s/base`);
}
const selectorAt = own.findIndex((word) => word === '-l' || word === '--selector');
if (selectorAt !== -1) {
  const selector = own[selectorAt + 1] ?? '';
  const wanted = selector.split(',').map((pair) => pair.split('='));
  const matches = (labels: Record<string, string> | undefined) => wanted.every(([key, value]) => labels?.[key ?? ''] === value);
  const pods = own.includes('pods') || own.includes('logs');
  const hit = manifests.some((m) => (pods ? matches(m.spec?.template?.metadata?.labels) : matches(m.metadata.labels)));
  if (!hit) refuse(`-l ${selector} selects nothing k8s/base renders${pods ? ' as pods' : ''}`);
}

// 3. What the cluster would answer.
const verb = own.find((word, i) => !word.startsWith('-') && own[i - 1] !== '-n');
switch (verb) {
  case 'logs':
    process.stdout.write(readFileSync(env('SJ_FAKE_LOGS'), 'utf8'));
    break;
  case 'get':
    if (own.includes('configmap')) {
      const rendered = spawnSync(env('SJ_FAKE_REAL_KUBECTL'), ['kustomize', env('SJ_FAKE_KUSTOMIZATION')], { encoding: 'utf8' }).stdout;
      process.stdout.write(
        rendered
          .split(/^---$/m)
          .filter((doc) => /^kind: ConfigMap$/m.test(doc))
          .join('---\n'),
      );
    }
    break;
  case 'exec': {
    const [command, ...rest] = inPod;
    // The runtime image (node:24-bookworm-slim) has coreutils: the runbook's clock check reads the pod's date.
    if (command === 'date') process.exit(spawnSync('date', rest, { stdio: 'inherit' }).status ?? 1);
    if (command !== 'node') refuse(`exec of ${command ?? 'nothing'}: only node and date are run in the image`);
    const port = env('SJ_FAKE_METRICS_PORT');
    const nodeArgs =
      rest[0] === 'dist/cli.js'
        ? [fileURLToPath(new URL('../../src/cli.ts', import.meta.url)), ...rest.slice(1)]
        : rest.map((arg) => arg.replaceAll('127.0.0.1:9464', `127.0.0.1:${port}`));
    const result = spawnSync(process.execPath, nodeArgs, {
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: env('SJ_FAKE_DATABASE_URL') },
      stdio: 'inherit',
      timeout: 120_000,
    });
    process.exit(result.status ?? 1);
    break;
  }
  case 'describe':
  case 'rollout':
  case 'scale':
  case 'delete':
  case 'port-forward':
    break;
  default:
    refuse(`no stand-in for kubectl ${verb ?? ''}`);
}
