/** The results as JSON and as a markdown table (bench/results/), and the table on stdout. */
import { mkdir, writeFile } from 'node:fs/promises';
import type { CaseResult, WorkloadFigures } from './cases.ts';
import type { DataSet } from './dataset.ts';
import { formatBytes, round } from './stats.ts';

export interface Target {
  readonly target: string;
  readonly figure: string;
  readonly met: boolean | null;
}

export interface Results {
  readonly command: string;
  readonly startedAt: string;
  readonly seconds: number;
  readonly machine: string;
  readonly settings: Record<string, string>;
  readonly dataSet: DataSet;
  readonly cases: CaseResult[];
  readonly workload: WorkloadFigures[];
  readonly purgeRss: { readonly maxRssBytes: number; readonly rssSampledMaxBytes: number } | null;
  readonly targets: Target[];
  readonly notes: string[];
}

const ms = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '-' : value >= 100 ? String(Math.round(value)) : value.toFixed(1));

export function markdown(results: Results): string {
  const d = results.dataSet;
  const lines: string[] = [];
  lines.push(`### session-janitor purge benchmark, ${results.startedAt}`);
  lines.push('');
  lines.push(`Command: \`${results.command}\` (${Math.round(results.seconds)} s in all)  `);
  lines.push(`Machine: ${results.machine}  `);
  lines.push(`Server: ${results.settings.version ?? '?'}  `);
  lines.push(
    `Settings: ${Object.entries(results.settings)
      .filter(([k]) => k !== 'version')
      .map(([k, v]) => `${k}=${v}`)
      .join(', ')}  `,
  );
  lines.push(
    `Data set: ${d.sessions.toLocaleString('en')} sessions, ${d.users.toLocaleString('en')} users, ${d.expired.toLocaleString('en')} expired, ` +
      `${d.idle.toLocaleString('en')} live but idle > 14 days; heap ${formatBytes(d.tableBytes)}, indexes ${formatBytes(d.indexBytes)}; built in ${Math.round(d.buildSeconds)} s`,
  );
  lines.push('');
  lines.push('| case | rows | seconds | rows/s | ratio | batch p50 / p99 / max (ms) | WAL | notes |');
  lines.push('| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |');
  for (const c of results.cases) {
    const b = c.batches;
    lines.push(
      `| ${c.id}. ${c.name} | ${c.rows?.toLocaleString('en') ?? '-'} | ${c.seconds?.toFixed(3) ?? '-'} | ${c.rowsPerSecond === undefined ? '-' : Math.round(c.rowsPerSecond).toLocaleString('en')} | ` +
        `${c.ratio === undefined ? (c.reference === undefined && c.rowsPerSecond !== undefined ? 'ref' : '-') : c.ratio.toFixed(2)} | ${b ? `${ms(b.p50)} / ${ms(b.p99)} / ${ms(b.max)} (n=${b.n})` : '-'} | ` +
        `${c.walBytes === undefined ? '-' : formatBytes(c.walBytes)} | ${c.notes ?? ''} |`,
    );
  }
  if (results.workload.length > 0) {
    lines.push('');
    lines.push(
      'Refresh workload (open loop; latency from when each transaction was due; "alone" is the workload before and after the purge on the same copy; samples of all runs pooled):',
    );
    lines.push('');
    lines.push('| scenario | transactions | p50 ms | p99 ms | max ms | failed | p99 / alone, each run | purge beside it |');
    lines.push('| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |');
    for (const w of results.workload) {
      const p = w.purge;
      lines.push(
        `| ${w.scenario} | ${w.latency.n} | ${ms(w.latency.p50)} | ${ms(w.latency.p99)} | ${ms(w.latency.max)} | ${w.failed} | ` +
          `${w.p99Ratios ? w.p99Ratios.map((x) => x.toFixed(2)).join(', ') : ''} | ` +
          `${p ? `${Math.round(p.rows).toLocaleString('en')} rows in ${p.seconds.toFixed(2)} s (${p.seconds > 0 ? Math.round(p.rows / p.seconds).toLocaleString('en') : '-'} rows/s)${p.heldBackSeconds ? `, held back ${p.heldBackSeconds.toFixed(2)} s` : ''}, batch p99 ${ms(p.batches.p99)} ms` : ''} |`,
      );
    }
  }
  if (results.purgeRss) {
    lines.push('');
    lines.push(
      `Worker peak RSS during case 3: ${formatBytes(results.purgeRss.maxRssBytes)} (getrusage ru_maxrss of the child process running purgeExpired(), ` +
        `from its start to the end of the run; ${formatBytes(results.purgeRss.rssSampledMaxBytes)} as the max of process.memoryUsage.rss() sampled every 10 ms during the run).`,
    );
  }
  lines.push('');
  lines.push('| target | figure | met |');
  lines.push('| --- | --- | --- |');
  for (const t of results.targets) lines.push(`| ${t.target} | ${t.figure} | ${t.met === null ? 'not measured' : t.met ? 'yes' : '**no**'} |`);
  if (results.notes.length > 0) {
    lines.push('');
    for (const n of results.notes) lines.push(`- ${n}`);
  }
  return `${lines.join('\n')}\n`;
}

export async function writeResults(results: Results): Promise<{ json: string; md: string }> {
  const dir = new URL('./results/', import.meta.url);
  await mkdir(dir, { recursive: true });
  const stamp = results.startedAt.replace(/[:.]/g, '-');
  const json = new URL(`purge-${stamp}.json`, dir);
  const md = new URL(`purge-${stamp}.md`, dir);
  const text = markdown(results);
  await writeFile(
    json,
    `${JSON.stringify(results, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : typeof v === 'number' ? round(v, 3) : v), 2)}\n`,
  );
  await writeFile(md, text);
  await writeFile(new URL('latest.md', dir), text);
  await writeFile(new URL('latest.json', dir), await import('node:fs/promises').then((fs) => fs.readFile(json, 'utf8')));
  return { json: json.pathname, md: md.pathname };
}
