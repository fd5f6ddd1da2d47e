// ESLint: typescript-eslint's type-checked rules, and no import cycle (import-x/no-cycle).
// Layout is Prettier's (.prettierrc.json): nothing here is about formatting.
import js from '@eslint/js';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

// The layers of docs/architecture.md: a file imports only from its own layer and the layers below.
const WORKER = ['src/{worker,install,gauges,http,boss,cluster-state}.ts', 'src/consumers/**'];
const FOUNDATION = ['src/config.ts', 'src/logger.ts', 'src/metrics.ts', 'src/queues.ts', 'src/revoke-request.ts', 'src/command-line.ts'];
const layer = (target, from, why) => ({ target, from, message: `(docs/architecture.md: ${why})` });
const LAYERS = [
  layer(['src/!(cli).ts', 'src/*/**'], 'src/cli.ts', 'the entry point imports, nothing imports it'),
  layer(['src/!(cli).ts', 'src/{consumers,tasks,db}/**'], 'src/commands/**', 'only cli.ts runs the commands'),
  layer(['src/{tasks,db}/**', 'src/client.ts', ...FOUNDATION], WORKER, 'the worker process wires the tasks, not the other way'),
  layer(['src/db/**', 'src/client.ts', ...FOUNDATION], 'src/tasks/**', 'the tasks use the database layer, not the other way'),
  layer(['src/db/sql/**', 'src/client.ts'], 'src/db/*.ts', "statements and the producers' client need no connection code"),
  layer(FOUNDATION, 'src/db/!(connection-string|errors).ts', 'configuration, logging and metrics use only the redaction of connection strings and errors'),
];

export default tseslint.config(
  { ignores: ['dist/', '.data/', 'node_modules/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'import-x': importX },
    settings: {
      // The imports name their files ('./worker.ts'); import-x reads .ts files with typescript-eslint's parser.
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'] })],
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      // Cycles are among our own files: following imports into node_modules costs most of the lint's time.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': ['error', { basePath: import.meta.dirname, zones: LAYERS }],
      // node:test's test() and describe() return promises that the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      // An async function without await still turns a throw into a rejection, which callers rely on.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^_', argsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // Tests read rows of ad-hoc queries (pg types them any) and assert on them field by field.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: { process: 'readonly', require: 'readonly', module: 'writable', console: 'readonly' } },
  },
  {
    // The launcher and the Node check are CommonJS on purpose: any Node parses them and prints one line.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
