// `npm start`, `npm test` and the `session-janitor` bin (bin/session-janitor.cjs) run this first,
// under whatever `node` comes first on PATH: node_modules/.bin/node where npm installed the
// project's own Node 24 (the optional dependencies node-<platform>-<arch>; npm scripts and `npx`
// put it first), else the machine's. Plain ES5 and CommonJS on purpose, so that any Node prints the
// one line below instead of a syntax error. `test` also needs the test runner's
// --test-global-setup (Node 24).
var fs = require('fs');
var path = require('path');

/** Exits 1 with one line when this Node cannot run the project (purpose 'test': nor its tests). */
function checkNode(purpose) {
  var parts = process.versions.node.split('.');
  var major = Number(parts[0]);
  var minor = Number(parts[1]);
  var missing;
  if (major < 22 || (major === 22 && minor < 18)) missing = 'Node >= 22.18 (it runs .ts files directly)';
  else if (purpose === 'test' && !(process.allowedNodeEnvironmentFlags && process.allowedNodeEnvironmentFlags.has('--test-global-setup'))) {
    missing = 'a Node whose test runner has --test-global-setup (Node 24)';
  }
  if (!missing) return;
  var own = path.join(__dirname, '..', 'node_modules', '.bin', 'node');
  var fix = fs.existsSync(own)
    ? 'npm installed Node 24 at ' + own + ': run commands as `npx session-janitor <command>`, `npm start` or `npm test`, which put it first on PATH.'
    : 'npm has no Node 24 package for ' +
      process.platform +
      '-' +
      process.arch +
      ' to bring: install Node 24 (https://nodejs.org/en/download, or `nvm install 24`) and run the command again.';
  process.stderr.write('session-janitor needs ' + missing + ', but this is Node ' + process.versions.node + ' (' + process.execPath + '). ' + fix + '\n');
  process.exit(1);
}

if (require.main === module) checkNode(process.argv[2]);
else module.exports = checkNode;
