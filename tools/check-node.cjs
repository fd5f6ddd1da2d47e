// `npm start` and `npm test` run this first, under whatever `node` npm's scripts find first on
// PATH: node_modules/.bin/node where npm installed the project's own Node 24 (the optional
// dependencies node-<platform>-<arch>), else the machine's. Plain ES5 and CommonJS on purpose, so
// that any Node prints the one line below instead of a syntax error. `test` also needs the test
// runner's --test-global-setup (Node 24).
var parts = process.versions.node.split('.');
var major = Number(parts[0]);
var minor = Number(parts[1]);
var missing;
if (major < 22 || (major === 22 && minor < 18)) missing = 'Node >= 22.18 (it runs .ts files directly)';
else if (process.argv[2] === 'test' && !(process.allowedNodeEnvironmentFlags && process.allowedNodeEnvironmentFlags.has('--test-global-setup'))) {
  missing = 'a Node whose test runner has --test-global-setup (Node 24)';
}
if (missing) {
  process.stderr.write(
    'session-janitor needs ' +
      missing +
      ', but this is Node ' +
      process.versions.node +
      ' (' +
      process.execPath +
      ') and npm has no Node 24 package for ' +
      process.platform +
      '-' +
      process.arch +
      ' to bring: install Node 24 (https://nodejs.org/en/download, or `nvm install 24`) and run the command again.\n',
  );
  process.exit(1);
}
