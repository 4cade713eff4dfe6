#!/usr/bin/env node
// `npm run bench -- <name>`: runs the compiled benchmark bench/<name>.ts (built by `npm run build`).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const name = process.argv[2];
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!name || !/^[a-z0-9-]+$/.test(name)) {
  process.stderr.write('usage: npm run bench -- <name>   (see bench/)\n');
  process.exit(2);
}
const file = join(root, 'dist', 'bench', `${name}.js`);
if (!existsSync(file)) {
  process.stderr.write(`no benchmark named ${name} (run npm run build first?)\n`);
  process.exit(2);
}
const mod = await import(pathToFileURL(file).href);
await mod.run(process.argv.slice(3));
