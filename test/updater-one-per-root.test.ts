/**
 * One updater per state dir and per release root: real `corral updater serve` processes on one
 * root, from the same state dir and from another one. Needs the build (`npx tsc -p .`).
 */
import { lstat, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral } from '../cli/up/corral-cli.js';
import { readPidFile } from '../kit/pid-file.js';
import { isAlive } from '../kit/proc.js';
import {
  CORRAL_BIN,
  createFleet,
  createWorker,
  spawnUpdater,
  tempDir,
  type Fleet,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let fleet: Fleet;
let dir: string;
const procs: UpdaterProcess[] = [];

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('one-per-root');
});
afterAll(async () => {
  for (const p of procs) await p.stop();
  await rm(dir, { recursive: true, force: true });
});

/** `updater serve` for `w` on `root` to its end: it must refuse, so it ends by itself. */
const refused = (w: Worker, root: string) =>
  runCorral(
    { bin: CORRAL_BIN },
    [
      'updater',
      'serve',
      '--state-dir',
      w.stateDir,
      '--root',
      root,
      '--agent-state-dir',
      join(w.stateDir, 'agent'),
      '--listen',
      '127.0.0.1:0',
    ],
    { timeoutMs: 60_000 },
  );

describe('corral updater serve, twice on one root', () => {
  it('refuses a second updater from the same state dir or another, and a stale claim is taken over', async () => {
    const a = await createWorker(fleet, join(dir, 'a'), 'w-a');
    const b = { ...(await createWorker(fleet, join(dir, 'b'), 'w-b')), root: a.root };
    const first = await spawnUpdater(a);
    procs.push(first);
    const pidFile = join(a.stateDir, 'agent', 'run', 'updater.pid');
    expect(await readPidFile(pidFile)).toMatchObject({
      daemon: 'updater',
      pid: first.child.pid,
      dirs: [a.root],
    });
    // The root points at that one record.
    expect(await readlink(join(a.root, '.updater', 'updater.pid'))).toBe(pidFile);

    const sameState = await refused(a, a.root);
    expect(sameState.code, sameState.stderr).toBe(1);
    expect(sameState.stderr).toContain(
      `another updater (pid ${first.child.pid}) is running on ${join(a.stateDir, 'agent')}`,
    );
    const otherState = await refused(b, a.root);
    expect(otherState.code, otherState.stderr).toBe(1);
    expect(otherState.stderr).toContain(`another updater (pid ${first.child.pid}) is running on ${a.root}`);
    // The refused one changed nothing: the first still runs and holds both.
    expect(await isAlive(first.child.pid ?? 0)).toBe(true);
    expect((await readPidFile(pidFile))?.pid).toBe(first.child.pid);
    expect(await readlink(join(a.root, '.updater', 'updater.pid'))).toBe(pidFile);
    await expect(lstat(join(b.stateDir, 'agent', 'run', 'updater.pid'))).rejects.toThrow(/ENOENT/);

    // Killed with no chance to clean up: its claims are stale, and the next updater takes them.
    first.child.kill('SIGKILL');
    await first.stop();
    const next = await spawnUpdater(b);
    procs.push(next);
    expect(await readlink(join(a.root, '.updater', 'updater.pid'))).toBe(
      join(b.stateDir, 'agent', 'run', 'updater.pid'),
    );
    // A clean stop removes both.
    await next.stop();
    await expect(lstat(join(a.root, '.updater', 'updater.pid'))).rejects.toThrow(/ENOENT/);
    await expect(lstat(join(b.stateDir, 'agent', 'run', 'updater.pid'))).rejects.toThrow(/ENOENT/);
  }, 180_000);
});
