#!/usr/bin/env node
// Builds the dashboard into dist/ui: its modules bundled into one minified main.js by esbuild
// (one request, no import waterfall), beside its page and styles. tsc type-checks ui/ and
// emits a module per file there first; those are removed, so the folder holds what is served.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'ui');
const to = join(root, 'dist', 'ui');
await mkdir(to, { recursive: true });
for (const name of await readdir(to)) {
  if (name.endsWith('.js') || name.endsWith('.js.map')) await rm(join(to, name), { force: true });
}
await build({
  entryPoints: [join(from, 'main.ts')],
  outfile: join(to, 'main.js'),
  bundle: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const name of await readdir(from)) {
  if (name.endsWith('.html') || name.endsWith('.css')) await copyFile(join(from, name), join(to, name));
}
