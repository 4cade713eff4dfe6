#!/usr/bin/env node
// The `corral` executable: runs the compiled CLI (built by `npm install` through the prepare script).
// runCli ends the process itself, once the output is drained.
import { runCli } from '../dist/cli/main.js';

runCli(process.argv).catch((e) => {
  process.stderr.write(`corral: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
