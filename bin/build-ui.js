#!/usr/bin/env node
// Copies the dashboard's page and styles beside its compiled scripts (tsc writes dist/ui/*.js).
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'ui');
const to = join(root, 'dist', 'ui');
await mkdir(to, { recursive: true });
for (const name of await readdir(from)) {
  if (name.endsWith('.html') || name.endsWith('.css')) await copyFile(join(from, name), join(to, name));
}
