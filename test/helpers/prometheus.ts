/**
 * A real Prometheus server for the tests (Debian's prometheus package, beside promtool): it scrapes
 * its targets every second and evaluates the shipped alert rules, unchanged, every second.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/db/embedded.ts';
import { prometheus as prometheusBinary } from './promtool.ts';
import { until } from './wait.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RULES = join(root, 'monitoring', 'prometheus', 'session-janitor.rules.yml');

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface Prometheus {
  /** An instant query, at `time` (Unix seconds) or now. */
  readonly query: (query: string, time?: number) => Promise<Sample[]>;
  /** alertname to alertstate (pending, firing) of the alerts active now. */
  readonly alertStates: () => Promise<Map<string, string>>;
  readonly stop: () => Promise<void>;
}

/** targets: host:port of each worker, one scrape job (`session-janitor`) for all. */
export async function startPrometheus(...targets: string[]): Promise<Prometheus> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sj-prometheus-'));
  const config = join(dataDir, 'prometheus.yml');
  await writeFile(
    config,
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: 'session-janitor', static_configs: [{ targets }] }],
    }),
  );
  const port = await freePort();
  const server = spawn(
    prometheusBinary(),
    [`--config.file=${config}`, `--storage.tsdb.path=${join(dataDir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: 'ignore' },
  );
  const stop = async () => {
    server.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    await until('Prometheus to be ready', async () => (await fetch(`${base}/-/ready`).catch(() => undefined))?.ok, 30_000);
  } catch (error) {
    await stop();
    throw error;
  }
  const query = async (q: string, time?: number) => {
    const params = new URLSearchParams({ query: q, ...(time === undefined ? {} : { time: String(time) }) });
    const body = (await (await fetch(`${base}/api/v1/query?${params.toString()}`)).json()) as { status: string; data: { result: Sample[] }; error?: string };
    assert.equal(body.status, 'success', body.error);
    return body.data.result;
  };
  return {
    query,
    alertStates: async () => new Map((await query('ALERTS')).map((s) => [s.metric.alertname ?? '', s.metric.alertstate ?? ''])),
    stop,
  };
}
