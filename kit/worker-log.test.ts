import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isCorralError } from '../protocol/errors.js';
import { createWorkerLog } from './worker-log.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-worker-log-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('worker log close()', () => {
  it('a second close() resolves only after every queued append is in the file', async () => {
    const path = join(dir, 'logs', 'worker.log');
    const log = createWorkerLog(path);
    const appends = Array.from({ length: 200 }, (_, i) => log.append([`line ${i} ${'x'.repeat(200)}`]));
    const first = log.close();
    await log.close();
    const lines = (await readFile(path, 'utf8')).split('\n').filter((l) => l.length > 0);
    expect(lines).toHaveLength(200);
    expect(lines[199]).toMatch(/^line 199 /);
    await Promise.all([first, ...appends]);
  });

  it('refuses an append after close() with CORRAL_ERR_CLOSED and writes nothing', async () => {
    const path = join(dir, 'worker.log');
    const log = createWorkerLog(path);
    await log.append(['before']);
    await log.close();
    const failure = await log.append(['after']).catch((e: unknown) => e);
    expect(isCorralError(failure, ErrorCode.CLOSED)).toBe(true);
    expect(await readFile(path, 'utf8')).toBe('before\n');
  });
});
