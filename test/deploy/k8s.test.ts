/**
 * The Kubernetes manifests, rendered with `kubectl kustomize` (base and every overlay) and checked
 * twice: against the API schemas (kubernetes-models, @kubernetes-models/prometheus-operator), which
 * catch wrong types, enums and missing fields but NOT misspelt field names, and against explicit
 * policy assertions on the rendered objects, which spell out the keys that matter.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, JSONInstruction } from 'dockerfile-ast';
import { parseAllDocuments, parseDocument } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import type { INamespace } from 'kubernetes-models/v1/Namespace';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IJob } from 'kubernetes-models/batch/v1/Job';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPort } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPort';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';
import type { IPrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const APP = 'session-janitor';
const NAME_LABEL = 'app.kubernetes.io/name';
const COMPONENT_LABEL = 'app.kubernetes.io/component';
const METRICS_PORT = 9464;

// ---------------------------------------------------------------------------------------------
// Rendering

function kubectl(args: readonly string[]): string {
  try {
    return execFileSync('kubectl', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') {
      throw new Error(
        'kubectl is not on PATH: these tests render the manifests with `kubectl kustomize` (kubectl >= 1.27, for kustomize components). ' +
          'Install kubectl; the tests do not skip without it.',
        { cause: error },
      );
    }
    const stderr = error instanceof Error && 'stderr' in error ? String(error.stderr) : '';
    throw new Error(`kubectl ${args.join(' ')} failed: ${stderr || String(error)}`, { cause: error });
  }
}

interface Metadata {
  readonly name: string;
  readonly namespace?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
}

interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: Metadata;
  readonly [field: string]: unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function render(dir: string): K8sObject[] {
  const text = kubectl(['kustomize', dir]);
  const objects: K8sObject[] = [];
  for (const document of parseAllDocuments(text)) {
    assert.deepEqual(document.errors, [], `${dir}: the rendered YAML does not parse`);
    const value: unknown = document.toJS();
    if (value === null) continue;
    assert.ok(isRecord(value), `${dir}: a rendered document is not an object`);
    const { apiVersion, kind, metadata } = value;
    assert.ok(typeof apiVersion === 'string' && typeof kind === 'string', `${dir}: an object without apiVersion or kind`);
    assert.ok(isRecord(metadata) && typeof metadata.name === 'string', `${dir}: a ${kind} without metadata.name`);
    objects.push(value as K8sObject);
  }
  return objects;
}

/** Each object kind the manifests may contain, with its schema. Anything else fails the test. */
type Validatable = new (data: never) => { validate(): void };
const MODELS: Readonly<Record<string, Validatable>> = {
  'apps/v1/Deployment': Deployment,
  'batch/v1/Job': Job,
  'v1/ConfigMap': ConfigMap,
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

function ofKind<T>(objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as unknown[] as T[];
}

function single<T>(objects: readonly K8sObject[], kind: string): T {
  const found = ofKind<T>(objects, kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, found ${found.length}`);
  return found[0] as T;
}

// ---------------------------------------------------------------------------------------------
// What the image runs, from the Dockerfile, to know what a container's command/args amount to.

const dockerfile = DockerfileParser.parse(readFileSync(`${root}Dockerfile`, 'utf8'));
const lastStage = dockerfile.getInstructions().slice(dockerfile.getInstructions().findLastIndex((i) => i.getKeyword() === 'FROM'));
function lastJson(keyword: string): string[] | undefined {
  const instruction = lastStage.filter((i) => i.getKeyword() === keyword).at(-1);
  if (instruction === undefined) return undefined;
  assert.ok(instruction instanceof JSONInstruction);
  return instruction.getJSONStrings().map((argument) => argument.getJSONValue());
}
const IMAGE_ENTRYPOINT = lastJson('ENTRYPOINT') ?? [];
const IMAGE_CMD = lastJson('CMD') ?? [];
const IMAGE_UID = Number(
  (
    lastStage
      .filter((i) => i.getKeyword() === 'USER')
      .at(-1)
      ?.getArguments()[0]
      ?.getValue() ?? ''
  ).split(':')[0],
);

/** The argv a container runs, as the kubelet combines command/args with the image's ENTRYPOINT/CMD. */
function argvOf(container: IContainer): string[] {
  if (container.command !== undefined) return [...container.command, ...(container.args ?? [])];
  return [...IMAGE_ENTRYPOINT, ...(container.args ?? IMAGE_CMD)];
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/** Keys a pod spec / container may have here: a misspelt key (the schemas accept it) fails. */
const POD_SPEC_KEYS = new Set([
  'serviceAccountName',
  'automountServiceAccountToken',
  'terminationGracePeriodSeconds',
  'securityContext',
  'topologySpreadConstraints',
  'containers',
  'volumes',
  'restartPolicy',
  'priorityClassName',
  'nodeSelector',
  'tolerations',
  'affinity',
]);
const CONTAINER_KEYS = new Set([
  'name',
  'image',
  'imagePullPolicy',
  'command',
  'args',
  'env',
  'envFrom',
  'ports',
  'startupProbe',
  'livenessProbe',
  'readinessProbe',
  'resources',
  'securityContext',
  'volumeMounts',
]);
const PROBE_KEYS = new Set(['httpGet', 'initialDelaySeconds', 'periodSeconds', 'timeoutSeconds', 'failureThreshold', 'successThreshold']);

function assertKeysWithin(object: object, allowed: ReadonlySet<string>, where: string): void {
  for (const key of Object.keys(object)) assert.ok(allowed.has(key), `${where}: unexpected field ${key} (misspelt?)`);
}

function labelsMatch(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>> | undefined): boolean {
  if (selector === undefined || Object.keys(selector).length === 0) return false; // an empty selector is too broad here
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/** Bytes of a memory quantity (Ki, Mi, Gi, k, M, G or plain). */
function bytes(quantity: string | number | undefined): number {
  if (quantity === undefined) return Number.NaN;
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(String(quantity));
  if (match === null) return Number.NaN;
  const factor = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 }[match[2] ?? ''] ?? 1;
  return Number(match[1]) * factor;
}

/** The environment a container gets from its ConfigMaps and literal values (not from Secrets). */
function environmentOf(container: IContainer, configMaps: readonly IConfigMap[], where: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    assert.equal(source.secretRef, undefined, `${where}: envFrom a Secret would hide which variables it sets`);
    const name = source.configMapRef?.name;
    const configMap = configMaps.find((candidate) => candidate.metadata?.name === name);
    assert.ok(configMap, `${where}: envFrom names ConfigMap ${name ?? '(none)'}, which is not rendered`);
    Object.assign(env, configMap.data ?? {});
  }
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
  }
  return env;
}

function assertDatabaseUrlFromSecret(container: IContainer, secretName: string, where: string): void {
  const entries = (container.env ?? []).filter((variable) => variable.name === 'DATABASE_URL');
  assert.equal(entries.length, 1, `${where}: DATABASE_URL must be set exactly once`);
  const entry = entries[0];
  assert.equal(entry?.value, undefined, `${where}: DATABASE_URL must not be a literal value`);
  assert.deepEqual(
    entry?.valueFrom,
    { secretKeyRef: { name: secretName, key: 'DATABASE_URL' } },
    `${where}: DATABASE_URL must come from secretKeyRef ${secretName}/DATABASE_URL`,
  );
}

function assertImagePinned(image: string | undefined, where: string): void {
  assert.ok(image, `${where}: no image`);
  const digest = /@sha256:[0-9a-f]{64}$/.test(image);
  const tag = /:([\w][\w.-]{0,127})$/.exec(image.replace(/@.*$/, ''))?.[1];
  assert.ok(digest || (tag !== undefined && tag !== 'latest'), `${where}: image ${image} must carry a version tag or a digest, never latest`);
}

/** The pod-level policy shared by the workers and the migrate Job. */
function assertPodHardened(pod: IPodSpec, objects: readonly K8sObject[], where: string): IContainer {
  assertKeysWithin(pod, POD_SPEC_KEYS, `${where} pod spec`);
  assert.deepEqual(
    pod.securityContext,
    { runAsNonRoot: true, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID, fsGroup: IMAGE_UID, seccompProfile: { type: 'RuntimeDefault' } },
    `${where}: the pod securityContext must be exactly runAsNonRoot, runAsUser/runAsGroup/fsGroup ${IMAGE_UID} (the image's USER) and seccomp RuntimeDefault`,
  );
  assert.ok(Number.isInteger(IMAGE_UID) && IMAGE_UID > 0, 'the Dockerfile USER must be a numeric non-root uid');
  assert.equal(pod.automountServiceAccountToken, false, `${where}: automountServiceAccountToken must be false`);
  const account = ofKind<IServiceAccount>(objects, 'ServiceAccount').find((candidate) => candidate.metadata?.name === pod.serviceAccountName);
  assert.ok(account, `${where}: serviceAccountName ${pod.serviceAccountName ?? '(default)'} is not rendered: use the app's own account`);
  assert.equal(account.automountServiceAccountToken, false, `${where}: its ServiceAccount must not automount a token either`);

  assert.equal(pod.containers.length, 1, `${where}: one container`);
  assert.equal(pod.initContainers, undefined, `${where}: no init containers`);
  const container = pod.containers[0] as IContainer;
  assertKeysWithin(container, CONTAINER_KEYS, `${where} container`);
  assert.deepEqual(
    container.securityContext,
    { runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    `${where}: the container securityContext must be exactly runAsNonRoot true (a patch that drops the pod's keeps it), allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities.drop [ALL]`,
  );
  assertImagePinned(container.image, where);

  // A read-only root file system, with a writable emptyDir at /tmp.
  const tmpMounts = (container.volumeMounts ?? []).filter((mount) => mount.mountPath === '/tmp');
  assert.equal(tmpMounts.length, 1, `${where}: mount an emptyDir at /tmp`);
  const tmp = (pod.volumes ?? []).find((volume) => volume.name === tmpMounts[0]?.name);
  assert.ok(tmp && tmp.emptyDir !== undefined, `${where}: the /tmp volume must be an emptyDir`);
  assert.deepEqual(Object.keys(tmp).sort(), ['emptyDir', 'name'], `${where}: the /tmp volume is an emptyDir and nothing else`);

  // Requests and a memory limit sized for a worker that targets < 150 MB RSS.
  const resources = container.resources;
  assert.ok(resources?.requests?.cpu !== undefined && resources.requests.memory !== undefined, `${where}: set cpu and memory requests`);
  const limit = bytes(resources.limits?.memory);
  assert.ok(limit >= 150 * 1024 ** 2 && limit <= 512 * 1024 ** 2, `${where}: memory limit ${String(resources.limits?.memory)} should be 150Mi..512Mi`);
  assert.ok(bytes(resources.requests.memory) <= limit, `${where}: memory request above the limit`);
  return container;
}

function httpGetOf(probe: IProbe | undefined, where: string): { path: string; port: string | number } {
  assert.ok(probe, `${where}: missing`);
  assertKeysWithin(probe, PROBE_KEYS, where);
  assert.ok(probe.httpGet, `${where}: must be an httpGet probe`);
  assertKeysWithin(probe.httpGet, new Set(['path', 'port', 'scheme']), `${where}.httpGet`);
  return { path: probe.httpGet.path ?? '/', port: probe.httpGet.port };
}

// ---------------------------------------------------------------------------------------------
// The kustomizations

const overlaysDir = `${root}k8s/overlays`;
const overlays = existsSync(overlaysDir) ? readdirSync(overlaysDir).filter((name) => existsSync(`${overlaysDir}/${name}/kustomization.yaml`)) : [];

test('there is a base and a production overlay', () => {
  assert.ok(existsSync(`${root}k8s/base/kustomization.yaml`), 'k8s/base/kustomization.yaml is missing');
  assert.ok(overlays.includes('production'), 'k8s/overlays/production is missing');
});

const TARGETS: ReadonlyArray<{ dir: string; overlay: string | null }> = [
  { dir: 'k8s/base', overlay: null },
  ...overlays.map((name) => ({ dir: `k8s/overlays/${name}`, overlay: name })),
];

for (const { dir, overlay } of TARGETS) {
  describe(dir, () => {
    let objects: K8sObject[];
    try {
      objects = render(dir);
    } catch (error) {
      // A failing test (not a failing suite), so the summary counts it.
      test(`renders with kubectl kustomize ${dir}`, () => {
        throw error;
      });
      return;
    }
    test(`renders with kubectl kustomize ${dir}`, () => {
      assert.ok(objects.length > 0, `${dir} renders nothing`);
    });
    const configMaps = ofKind<IConfigMap>(objects, 'ConfigMap');
    const deployment = single<IDeployment>(objects, 'Deployment');
    const podLabels = deployment.spec?.template.metadata?.labels ?? {};
    const pod = deployment.spec?.template.spec as IPodSpec;

    test('every object is a known kind and valid against its API schema', () => {
      for (const object of objects) {
        const key = `${object.apiVersion}/${object.kind}`;
        const Model = MODELS[key];
        assert.ok(Model, `${key} ${object.metadata.name}: no schema known for this kind (add one to MODELS)`);
        try {
          new Model(object as never).validate();
        } catch (error) {
          assert.fail(`${key} ${object.metadata.name} is invalid: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      assert.equal(ofKind(objects, 'Secret').length, 0, 'no Secret is committed: the operator creates them (docs/deployment.md)');
    });

    test('every object is labelled app.kubernetes.io/name=session-janitor and lives in the overlay namespace', () => {
      for (const object of objects) {
        if (object.kind === 'Namespace') continue; // the overlay's namespace itself, a cluster-scoped object
        assert.equal(object.metadata.labels?.[NAME_LABEL], APP, `${object.kind} ${object.metadata.name}: label ${NAME_LABEL}`);
        if (overlay === null) assert.equal(object.metadata.namespace, undefined, `the base sets no namespace (${object.kind})`);
        else assert.ok(object.metadata.namespace, `${overlay}: ${object.kind} ${object.metadata.name} has no namespace`);
      }
      const namespaces = new Set(objects.filter((object) => object.kind !== 'Namespace').map((object) => object.metadata.namespace));
      assert.equal(namespaces.size, 1, `all objects in one namespace, found ${[...namespaces].join(', ')}`);
    });

    test('the ConfigMap is generated (hash-suffixed) and holds only known variables, never DATABASE_URL', () => {
      assert.equal(configMaps.length, 1, 'one ConfigMap');
      const configMap = configMaps[0] as IConfigMap;
      assert.match(configMap.metadata?.name ?? '', /^session-janitor-config-[a-z0-9]{10}$/, 'made by configMapGenerator, so a change rolls the pods');
      const known = new Set<string>(CONFIG_VARIABLES);
      const keys = Object.keys(configMap.data ?? {});
      assert.ok(keys.length > 0, 'the ConfigMap is empty');
      assert.ok(!keys.includes('DATABASE_URL'), 'DATABASE_URL belongs in a Secret, not the ConfigMap');
      for (const key of keys) assert.ok(known.has(key), `ConfigMap key ${key} is not a variable of src/config.ts (typo?)`);
      assert.equal(configMap.binaryData, undefined);
    });

    test('the Deployment: replicas, rolling update, selector and topology spread', () => {
      const spec = deployment.spec;
      assert.ok(spec);
      assert.ok((spec.replicas ?? 1) >= 2, `replicas ${String(spec.replicas)}: at least 2`);
      if (overlay === 'production') assert.equal(spec.replicas, 3, 'production runs 3 replicas');
      assert.equal(spec.strategy?.type, 'RollingUpdate');
      assert.ok([0, '0', '0%'].includes(spec.strategy?.rollingUpdate?.maxUnavailable ?? 'unset'), 'maxUnavailable must be 0');
      assert.ok([1, '1'].includes(spec.strategy?.rollingUpdate?.maxSurge ?? 'unset'), 'maxSurge must be 1');
      assert.equal(podLabels[NAME_LABEL], APP);
      assert.equal(podLabels[COMPONENT_LABEL], 'worker');
      assert.ok(labelsMatch(spec.selector.matchLabels, podLabels), 'the selector must match the pod labels');
      const spread = pod.topologySpreadConstraints ?? [];
      const zone = spread.find((constraint) => constraint.topologyKey === 'topology.kubernetes.io/zone');
      const host = spread.find((constraint) => constraint.topologyKey === 'kubernetes.io/hostname');
      assert.ok(zone && host, 'spread over zones and hosts');
      assert.equal(zone.whenUnsatisfiable, 'ScheduleAnyway', 'a zone outage must not block scheduling');
      for (const constraint of [zone, host]) {
        assert.ok(labelsMatch(constraint.labelSelector?.matchLabels, podLabels), `${constraint.topologyKey}: labelSelector must match the pods`);
      }
    });

    test('the worker pod is hardened', () => {
      const container = assertPodHardened(pod, objects, 'Deployment');
      assert.deepEqual(argvOf(container), ['node', 'dist/cli.js', 'start'], 'the workers run `node dist/cli.js start`');
    });

    test('the worker gets DATABASE_URL from the Secret session-janitor-db and never migrates', () => {
      const container = pod.containers[0] as IContainer;
      assertDatabaseUrlFromSecret(container, 'session-janitor-db', 'Deployment');
      const env = environmentOf(container, configMaps, 'Deployment');
      assert.equal(env.JANITOR_MIGRATE, 'false', 'the Deployment must set JANITOR_MIGRATE=false');
      const config = loadConfig(env);
      assert.equal(config.migrateOnStart, false);
      const known = new Set<string>([...CONFIG_VARIABLES, 'NODE_OPTIONS']);
      for (const variable of container.env ?? []) assert.ok(known.has(variable.name), `env ${variable.name} is not a known variable (typo?)`);
    });

    test('probes: /healthz for startup and liveness (no database), /readyz for readiness, on the metrics port', () => {
      const container = pod.containers[0] as IContainer;
      const env = environmentOf(container, configMaps, 'Deployment');
      const config = loadConfig(env);
      const ports = container.ports ?? [];
      assert.equal(ports.length, 1, 'one container port');
      assert.deepEqual(ports[0], { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' }, 'port metrics 9464/TCP');
      assert.equal(config.metricsPort, METRICS_PORT, 'JANITOR_METRICS_PORT must match the container port');
      const probes = {
        startupProbe: httpGetOf(container.startupProbe, 'startupProbe'),
        livenessProbe: httpGetOf(container.livenessProbe, 'livenessProbe'),
        readinessProbe: httpGetOf(container.readinessProbe, 'readinessProbe'),
      };
      assert.equal(probes.startupProbe.path, '/healthz');
      assert.equal(probes.livenessProbe.path, '/healthz', 'liveness must not depend on the database');
      assert.equal(probes.readinessProbe.path, '/readyz');
      for (const [name, probe] of Object.entries(probes)) {
        assert.ok(probe.port === 'metrics' || probe.port === METRICS_PORT, `${name}: port ${String(probe.port)} is not the metrics port`);
      }
    });

    test('terminationGracePeriodSeconds outlasts JANITOR_SHUTDOWN_TIMEOUT', () => {
      const env = environmentOf(pod.containers[0] as IContainer, configMaps, 'Deployment');
      const { shutdownTimeoutMs } = loadConfig(env);
      const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
      assert.ok(
        graceMs >= shutdownTimeoutMs + 5000,
        `terminationGracePeriodSeconds ${graceMs / 1000}s must exceed JANITOR_SHUTDOWN_TIMEOUT ${shutdownTimeoutMs / 1000}s by 5s or more, or SIGKILL cuts the drain short`,
      );
    });

    test('the PodDisruptionBudget covers the workers only and lets one go at a time', () => {
      const pdb = single<IPodDisruptionBudget>(objects, 'PodDisruptionBudget');
      assert.ok(labelsMatch(pdb.spec?.selector?.matchLabels, podLabels), 'the PDB selector must match the worker pods');
      const replicas = deployment.spec?.replicas ?? 1;
      const { minAvailable, maxUnavailable } = pdb.spec ?? {};
      assert.ok((minAvailable === undefined) !== (maxUnavailable === undefined), 'set exactly one of minAvailable and maxUnavailable');
      if (maxUnavailable !== undefined) {
        assert.ok(
          Number.isInteger(maxUnavailable) && Number(maxUnavailable) >= 1 && Number(maxUnavailable) < replicas,
          'maxUnavailable from 1 to replicas - 1',
        );
      } else {
        assert.ok(
          Number.isInteger(minAvailable) && Number(minAvailable) >= 1 && Number(minAvailable) < replicas,
          'minAvailable from 1 to replicas - 1 (or drains block)',
        );
      }
      // During a database outage every pod is unready: with the default policy no eviction could
      // keep the budget, and every node drain would block until the database came back.
      assert.equal(pdb.spec?.unhealthyPodEvictionPolicy, 'AlwaysAllow', 'unready workers must stay evictable (node drains during a database outage)');
    });

    test('the PodMonitor scrapes the metrics port with job="session-janitor"', () => {
      const monitor = single<IPodMonitor>(objects, 'PodMonitor');
      const spec = monitor.spec;
      assert.ok(labelsMatch(spec.selector.matchLabels, podLabels), 'the PodMonitor selector must match the worker pods');
      assert.equal(spec.namespaceSelector, undefined, 'scrape the pods in the PodMonitor namespace');
      assert.ok(spec.jobLabel, 'set jobLabel, or job is <namespace>/<podmonitor>');
      assert.equal(podLabels[spec.jobLabel], APP, `the pods' ${spec.jobLabel} label (the job label) must be ${APP}`);
      const endpoints = spec.podMetricsEndpoints ?? [];
      assert.equal(endpoints.length, 1);
      assert.equal(endpoints[0]?.port, 'metrics');
      assert.ok(
        (pod.containers[0]?.ports ?? []).some((port) => port.name === 'metrics'),
        'the pods have a port named metrics',
      );
      assert.ok([undefined, '/metrics'].includes(endpoints[0]?.path));
    });

    test('the PrometheusRule has a session-janitor group and selects job="session-janitor"', () => {
      const rule = single<IPrometheusRule>(objects, 'PrometheusRule');
      const groups = rule.spec.groups ?? [];
      assert.ok(
        groups.some((group) => group.name === APP),
        `a rule group named ${APP}`,
      );
      for (const group of groups) {
        for (const entry of group.rules ?? []) {
          for (const match of String(entry.expr).matchAll(/\bjob\s*=~?\s*"([^"]*)"/g)) {
            assert.equal(match[1], APP, `${entry.alert ?? entry.record ?? '?'}: selects job="${match[1] ?? ''}", the PodMonitor yields job="${APP}"`);
          }
        }
      }
    });

    test('the NetworkPolicy lets in only 9464 and out only PostgreSQL (5432) and DNS (53)', () => {
      const policy = single<INetworkPolicy>(objects, 'NetworkPolicy');
      const spec = policy.spec;
      assert.ok(spec);
      assert.ok(labelsMatch(spec.podSelector?.matchLabels, podLabels), 'the policy must select the worker pods');
      for (const job of ofKind<IJob>(objects, 'Job')) {
        assert.ok(labelsMatch(spec.podSelector?.matchLabels, job.spec?.template.metadata?.labels), 'the policy must select the migrate Job pods');
      }
      assert.deepEqual([...(spec.policyTypes ?? [])].sort(), ['Egress', 'Ingress']);
      const describePort = (port: INetworkPolicyPort): string =>
        `${port.protocol ?? 'TCP'}/${String(port.port ?? 'any')}${port.endPort ? `-${port.endPort}` : ''}`;
      const ingress = spec.ingress ?? [];
      assert.ok(ingress.length > 0, 'allow the scrapes in');
      const inPorts = ingress.flatMap((rule) => {
        assert.ok((rule.ports ?? []).length > 0, 'an ingress rule without ports allows every port');
        return (rule.ports ?? []).map(describePort);
      });
      for (const port of inPorts) assert.ok(['TCP/9464', 'TCP/metrics'].includes(port), `ingress allows ${port}: only 9464`);
      // Only Prometheus, from the monitoring namespace; the kubelet's probes are not subject to the policy.
      for (const rule of ingress) {
        const from = rule.from ?? [];
        assert.ok(from.length > 0, 'ingress on 9464 without `from` is open to every pod of every namespace');
        for (const peer of from) {
          assert.equal(peer.ipBlock, undefined, 'scrapes come from the monitoring namespace, not from an address range');
          assert.ok(
            peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'],
            `ingress from ${JSON.stringify(peer)}: name the monitoring namespace`,
          );
          assert.ok(peer.podSelector?.matchLabels, `ingress from ${JSON.stringify(peer)}: name the Prometheus pods`);
        }
      }
      const egress = spec.egress ?? [];
      const outPorts = egress.flatMap((rule) => {
        assert.ok((rule.ports ?? []).length > 0, 'an egress rule without ports allows every port');
        return (rule.ports ?? []).map(describePort);
      });
      assert.deepEqual([...new Set(outPorts)].sort(), ['TCP/53', 'TCP/5432', 'UDP/53'], 'egress only to PostgreSQL and DNS');
      for (const rule of egress) {
        const ports = (rule.ports ?? []).map(describePort);
        const to = rule.to ?? [];
        assert.ok(to.length > 0, `egress to ${ports.join(', ')} without \`to\` reaches every address`);
        if (ports.includes('TCP/5432')) {
          for (const peer of to) {
            const cidr = peer.ipBlock?.cidr;
            assert.ok(cidr !== undefined || peer.podSelector !== undefined, `PostgreSQL egress to ${JSON.stringify(peer)}: an address or the database's pods`);
            assert.ok(cidr === undefined || !/^(0\.0\.0\.0|::)\/0$/.test(cidr), 'PostgreSQL egress to every address');
          }
          // The base fails closed (TEST-NET-1); every overlay names its own database.
          const cidrs = to.map((peer) => peer.ipBlock?.cidr);
          if (overlay === null) assert.deepEqual(cidrs, ['192.0.2.1/32'], 'the base allows no real database address');
          else assert.ok(!cidrs.includes('192.0.2.1/32'), `overlay ${overlay} must set its database address (database-egress.yaml)`);
        } else {
          for (const peer of to) {
            assert.equal(peer.ipBlock, undefined, 'DNS goes to the cluster DNS pods, not to an address range');
            assert.deepEqual(peer.podSelector?.matchLabels, { 'k8s-app': 'kube-dns' }, 'DNS only to the cluster DNS pods');
          }
        }
      }
    });

    test('the Prometheus Operator selector label: set once, on both the PodMonitor and the PrometheusRule', () => {
      const monitor = single<IPodMonitor>(objects, 'PodMonitor');
      const rule = single<IPrometheusRule>(objects, 'PrometheusRule');
      const release = monitor.metadata?.labels?.release;
      assert.equal(rule.metadata?.labels?.release, release, 'the PodMonitor and the PrometheusRule must carry the same release label');
      // kube-prometheus-stack selects PodMonitors and rules by release=<its Helm release> by default.
      // Every installation is monitored (k8s/components/monitoring), staging as much as production.
      if (overlay !== null) assert.equal(release, 'kube-prometheus-stack', `${overlay}: not selected by the Prometheus Operator`);
      // An operator-specific label is the overlay's choice: the base carries none.
      if (overlay === null) assert.equal(release, undefined);
    });

    if (overlay !== null) {
      test('the overlay creates its namespace with the restricted Pod Security Standard enforced', () => {
        const namespace = single<INamespace>(objects, 'Namespace');
        const target = objects.find((object) => object.kind === 'Deployment')?.metadata.namespace;
        assert.equal(namespace.metadata?.name, target, 'the Namespace is the one the objects live in');
        const labels = namespace.metadata?.labels ?? {};
        for (const mode of ['enforce', 'audit', 'warn']) {
          assert.equal(labels[`pod-security.kubernetes.io/${mode}`], 'restricted', `pod-security.kubernetes.io/${mode}`);
        }
      });

      test('the migrate Job runs `migrate` as the migrator, on the same image and settings', () => {
        const job = single<IJob>(objects, 'Job');
        assert.equal(job.metadata?.labels?.[COMPONENT_LABEL], 'migrate');
        const spec = job.spec;
        assert.ok(spec);
        assert.ok(spec.backoffLimit !== undefined && spec.backoffLimit <= 6, 'a bounded backoffLimit');
        assert.ok(spec.ttlSecondsAfterFinished !== undefined, 'ttlSecondsAfterFinished, so finished Jobs go away');
        assert.ok(spec.activeDeadlineSeconds !== undefined, 'activeDeadlineSeconds, so a stuck migration fails the rollout');
        const jobPod = spec.template.spec as IPodSpec;
        assert.ok(['Never', 'OnFailure'].includes(jobPod.restartPolicy ?? ''), 'restartPolicy Never or OnFailure');
        assert.ok(!labelsMatch(deployment.spec?.selector.matchLabels, spec.template.metadata?.labels), 'the Deployment must not select the Job pods');
        const container = assertPodHardened(jobPod, objects, 'Job');
        assert.deepEqual(argvOf(container), ['node', 'dist/cli.js', 'migrate'], 'the Job runs `node dist/cli.js migrate`');
        assert.equal(container.image, pod.containers[0]?.image, 'the Job migrates with the image the Deployment rolls out');
        assertDatabaseUrlFromSecret(container, 'session-janitor-migrator-db', 'Job');
        const jobEnv = environmentOf(container, configMaps, 'Job');
        const workerEnv = environmentOf(pod.containers[0] as IContainer, configMaps, 'Deployment');
        const { migrateOnStart: _jobMigrate, ...jobConfig } = loadConfig(jobEnv);
        const { migrateOnStart: _workerMigrate, ...workerConfig } = loadConfig(workerEnv);
        assert.deepEqual(jobConfig, workerConfig, 'the Job installs the schedules and queues the workers run with: same settings');
      });

      test('the documented order works: the Job and what it needs apply before the Deployment', () => {
        // docs/deployment.md: `kubectl apply -k DIR -l app.kubernetes.io/component!=worker`, wait for the Job, then apply all.
        const first = objects.filter((object) => object.metadata.labels?.[COMPONENT_LABEL] !== 'worker');
        const firstKinds = new Set(first.map((object) => object.kind));
        for (const kind of ['Job', 'ConfigMap', 'ServiceAccount', 'NetworkPolicy']) {
          assert.ok(firstKinds.has(kind), `the first apply (component!=worker) must include the ${kind}`);
        }
        assert.ok(!firstKinds.has('Deployment'), 'the first apply must not roll the Deployment');
        assert.equal(deployment.metadata?.labels?.[COMPONENT_LABEL], 'worker');
        const job = single<IJob>(objects, 'Job');
        assert.equal(job.metadata?.name, 'session-janitor-migrate', 'the docs wait for job/session-janitor-migrate');
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Releases (docs/deployment.md, "Releasing"): CI sets the overlay's image tag to the release.

/** The image tag each kustomization pins (its `images:` entry for session-janitor). */
function pinnedTag(kustomizationPath: string): string | undefined {
  const document = parseDocument(readFileSync(kustomizationPath, 'utf8'));
  const images = document.toJS() as { images?: Array<{ name?: string; newTag?: unknown }> };
  const tag = images.images?.find((image) => image.name === 'session-janitor')?.newTag;
  return typeof tag === 'string' || typeof tag === 'number' ? String(tag) : undefined;
}

test("the base and every overlay pin the image of package.json's version (the release)", () => {
  const { version } = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { version: string };
  for (const { dir } of TARGETS) assert.equal(pinnedTag(`${root}${dir}/kustomization.yaml`), version, `${dir}/kustomization.yaml pins another tag`);
});

for (const overlay of overlays) {
  test(`a new release's tag set in k8s/overlays/${overlay} renders in the Deployment and in the migrate Job alike, and nowhere else changes`, () => {
    const copy = mkdtempSync(path.join(tmpdir(), 'sj-k8s-'));
    try {
      cpSync(`${root}k8s`, copy, { recursive: true });
      const file = path.join(copy, 'overlays', overlay, 'kustomization.yaml');
      // What `kustomize edit set image session-janitor=REGISTRY/session-janitor:TAG` writes.
      const document = parseDocument(readFileSync(file, 'utf8'));
      const images = document.get('images') as { items: Array<{ get(key: string): unknown; set(key: string, value: unknown): void }> };
      const entry = images.items.find((item) => item.get('name') === 'session-janitor');
      assert.ok(entry, `${overlay}: no images entry for session-janitor`);
      entry.set('newTag', '9.8.7');
      writeFileSync(file, document.toString());

      const before = render(`k8s/overlays/${overlay}`);
      const after = render(path.join(copy, 'overlays', overlay));
      const imageOf = (objects: K8sObject[], kind: 'Deployment' | 'Job') =>
        kind === 'Deployment'
          ? (single<IDeployment>(objects, 'Deployment').spec?.template.spec?.containers[0]?.image ?? '')
          : (single<IJob>(objects, 'Job').spec?.template.spec?.containers[0]?.image ?? '');
      const name = imageOf(before, 'Deployment').replace(/:[^:/]+$/, '');
      assert.equal(imageOf(after, 'Deployment'), `${name}:9.8.7`);
      assert.equal(imageOf(after, 'Job'), `${name}:9.8.7`, 'the migrate Job must run the image the Deployment rolls out');
      // Only the images changed: the same objects, in the same order, otherwise equal.
      const withoutImages = (objects: K8sObject[]) => JSON.stringify(objects).replaceAll(/"image":"[^"]*"/g, '"image":""');
      assert.equal(withoutImages(after), withoutImages(before));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
}
