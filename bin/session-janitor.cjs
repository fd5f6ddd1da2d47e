#!/usr/bin/env node
// The `session-janitor` command (package.json "bin"): `npx session-janitor <command>` in a checkout,
// `session-janitor <command>` where the package is installed. CommonJS and plain on purpose: any Node
// gets tools/check-node.cjs's one line instead of a stack trace. A checkout runs src/cli.ts as it
// is (no build step between an edit and the command); a packed package has no src/ and runs the
// compiled dist/cli.js.
var fs = require('fs');
var path = require('path');
var url = require('url');

require('../tools/check-node.cjs')();
var source = path.join(__dirname, '..', 'src', 'cli.ts');
var entry = fs.existsSync(source) ? source : path.join(__dirname, '..', 'dist', 'cli.js');
import(url.pathToFileURL(entry).href).catch(function (error) {
  process.stderr.write('session-janitor: cannot load ' + entry + ': ' + (error && error.message) + '\n');
  process.exitCode = 1;
});
