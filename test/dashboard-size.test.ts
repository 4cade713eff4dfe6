import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ROOT } from './fleet-fixture.js';

/** The dashboard's budget for script, gzipped (issue 17). */
const MAX_JS_GZIP_BYTES = 150 * 1024;
/** Names the controller serves from the dashboard's folder (controller/http/dashboard-assets.ts). */
const SERVED_RE = /^[a-z0-9][a-z0-9-]{0,63}\.js$/;

describe('the built dashboard', () => {
  it(`ships under ${MAX_JS_GZIP_BYTES / 1024} KB of script, gzipped (npm run build makes dist/ui)`, async () => {
    const dir = join(ROOT, 'dist', 'ui');
    const names = (await readdir(dir)).filter((n) => SERVED_RE.test(n));
    expect(names).toContain('main.js');
    let total = 0;
    for (const name of names) total += gzipSync(await readFile(join(dir, name)), { level: 9 }).length;
    console.log(`dashboard: ${names.length} script file(s), ${(total / 1024).toFixed(1)} KB gzipped`);
    expect(total).toBeLessThan(MAX_JS_GZIP_BYTES);
  });
});
