/**
 * Validates a Grafana dashboard JSON against @grafana/schema, Grafana's own published types of the
 * dashboard model (generated from its CUE schema): the JSON becomes the initialiser of a constant
 * typed as the schema's Dashboard, with each panel's options and field config typed as the schema
 * of its panel plugin (timeseries, stat, bar gauge), and the TypeScript compiler reports every
 * mismatch. The schema's enums (ThresholdsMode, ...) are compared by their string values, which is
 * what a JSON file holds.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import ts from 'typescript';

const require = createRequire(import.meta.url);

/** Deep JSON view of a schema type: every enum becomes the union of its string values. */
const PRELUDE = `
import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
import type { Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig } from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type { Options as BarGaugeOptions } from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
type Json<T> = T extends string ? \`\${T}\` : T extends readonly (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
type Typed<P, O, C = Record<string, unknown>> = Json<Omit<P, 'options' | 'fieldConfig'>> & {
  options: Json<O>;
  fieldConfig: { defaults: Json<Omit<NonNullable<Panel['fieldConfig']>['defaults'], 'custom'>> & { custom?: Json<C> }; overrides: Json<NonNullable<Panel['fieldConfig']>['overrides']> };
};
type AnyPanel =
  | (Typed<Panel, TimeSeriesOptions, TimeSeriesFieldConfig> & { type: 'timeseries' })
  | (Typed<Panel, StatOptions> & { type: 'stat' })
  | (Typed<Panel, BarGaugeOptions> & { type: 'bargauge' })
  | (Json<Omit<RowPanel, 'panels'>> & { type: 'row'; panels: AnyPanel[] });
type Checked = Json<Omit<Dashboard, 'panels'>> & { panels: AnyPanel[] };
`;

export interface SchemaError {
  readonly line: number;
  readonly message: string;
}

/** The type errors of `json` (a dashboard's text) against @grafana/schema; none when it is valid. */
export function grafanaSchemaErrors(json: string): SchemaError[] {
  const schemaDir = dirname(require.resolve('@grafana/schema/package.json'));
  // A virtual file beside the package, so that module resolution finds it like any importer would.
  const file = join(schemaDir, '..', '..', '__dashboard_check__.ts');
  const prelude = PRELUDE.trimStart();
  const source = `${prelude}export const dashboard: Checked = ${json};\n`;
  const offset = prelude.split('\n').length;
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, source, language) : readFile(name, language, ...rest));
  host.fileExists = (
    (exists) => (name: string) =>
      name === file || exists(name)
  )(host.fileExists.bind(host));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => ({
    line: diagnostic.file && diagnostic.start !== undefined ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start).line + 2 - offset : 0,
    message: ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'),
  }));
}
