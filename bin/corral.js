#!/usr/bin/env node
// The `corral` executable: runs the compiled CLI (built by `npm install` through the prepare script).
import { main } from '../dist/cli/main.js';

main(process.argv).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`corral: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
