import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CONTROLLER_LIST_FILE } from '../../protocol/controller-list.js';
import { openControllerDirectory } from './controller-directory.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'corral-directory-'));
  dirs.push(d);
  return d;
}

const log = pino({ level: 'silent' });
const bundleAddresses = ['a.example:8771'];

describe('controller directory (controllers.json)', () => {
  it('starts from the bundle, keeps a changed list atomically 0600, and uses it before the bundle after a restart', async () => {
    const dir = await stateDir();
    const first = await openControllerDirectory({ stateDir: dir, bundleAddresses, log });
    expect(first.workerAddresses()).toEqual(['a.example:8771']);
    const list = [
      { worker: 'b.example:8771', syslog: 'b.example:6514' },
      { worker: 'a.example:8771', syslog: 'a.example:6514' },
      { worker: 'b.example:8771' },
    ];
    expect(await first.accept(list, new Date('2026-01-01T00:00:00Z'))).toBe(true);
    expect(first.workerAddresses()).toEqual(['b.example:8771', 'a.example:8771']);
    const path = join(dir, CONTROLLER_LIST_FILE);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const written = await readFile(path, 'utf8');
    // The same list again writes nothing.
    expect(await first.accept(list.slice(0, 2), new Date('2026-01-02T00:00:00Z'))).toBe(false);
    expect(await readFile(path, 'utf8')).toBe(written);

    const again = await openControllerDirectory({ stateDir: dir, bundleAddresses: ['c.example:8771'], log });
    expect(again.workerAddresses()).toEqual(['b.example:8771', 'a.example:8771', 'c.example:8771']);
  });

  it('leaves out a damaged, oversized or foreign file and falls back to the bundle', async () => {
    const dir = await stateDir();
    const path = join(dir, CONTROLLER_LIST_FILE);
    const bad = [
      '{"version":1,"receivedAt":"2026-01-01T00:00:00Z","contr',
      JSON.stringify({ version: 2, receivedAt: '2026-01-01T00:00:00Z', controllers: [{ worker: 'x:1' }] }),
      JSON.stringify({
        version: 1,
        receivedAt: '2026-01-01T00:00:00Z',
        controllers: [{ worker: 'evil.example:8771', note: 'x'.repeat(20_000) }],
      }),
    ];
    for (const text of bad) {
      await writeFile(path, text);
      const d = await openControllerDirectory({ stateDir: dir, bundleAddresses, log });
      expect(d.workerAddresses()).toEqual(bundleAddresses);
    }
    // The next heartbeat answer writes a good one over it.
    const d = await openControllerDirectory({ stateDir: dir, bundleAddresses, log });
    expect(await d.accept([{ worker: 'b.example:8771' }], new Date())).toBe(true);
    const reopened = await openControllerDirectory({ stateDir: dir, bundleAddresses, log });
    expect(reopened.workerAddresses()).toEqual(['b.example:8771', 'a.example:8771']);
  });
});
