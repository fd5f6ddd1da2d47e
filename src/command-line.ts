/**
 * How an operator runs one of this program's commands where this code runs, for hints and log
 * lines: from a checkout (src/*.ts, any Node on PATH) `npx session-janitor <command>`, which puts the
 * project's Node 24 first on PATH; from the compiled package (the image's /app) `node dist/cli.js
 * <command>`, the image's own form.
 */
/** Running the TypeScript sources: a checkout (the image and a packed package run dist/). */
export const fromSource = import.meta.url.endsWith('.ts');

export function commandLine(command: string): string {
  return fromSource ? `npx session-janitor ${command}` : `node dist/cli.js ${command}`;
}
