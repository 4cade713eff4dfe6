import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../protocol/errors.js';
import { claimPidFile, livePidFile, pidFilePath, readPidFile } from './pid-file.js';
import { identityOf, type ProcessIdentity } from './proc.js';

let dir: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-pid-file-'));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** A real live process (it only sleeps) and its identity. */
async function sleeper(): Promise<ProcessIdentity> {
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  children.push(c);
  await once(c, 'spawn');
  const id = await identityOf(c.pid ?? 0);
  if (!id) throw new Error('no /proc entry');
  return id;
}

let n = 0;
const stateDir = (): string => join(dir, `s${n++}`);

describe('claimPidFile', () => {
  it('exclusive: a live other holder is a conflict naming it, and the file is left as it was', async () => {
    const s = stateDir();
    const other = await sleeper();
    await claimPidFile(s, 'agent', { exclusive: true, owner: other });
    const before = await readFile(pidFilePath(s, 'agent'), 'utf8');
    await expect(claimPidFile(s, 'agent', { exclusive: true })).rejects.toMatchObject({
      code: ErrorCode.CONFLICT,
      message: `another agent (pid ${other.pid}) is running on ${s}`,
    });
    expect(await readFile(pidFilePath(s, 'agent'), 'utf8')).toBe(before);
  });

  it('takes over the file of a process that is gone, of a reused pid, and a damaged one', async () => {
    const me = await identityOf(process.pid);
    const cases: [string, string][] = [
      [
        'gone',
        JSON.stringify({ daemon: 'agent', pid: 2 ** 22 + 7, startTime: '1', bootId: me?.bootId, dirs: [] }),
      ],
      ['reused pid', JSON.stringify({ daemon: 'agent', ...me, startTime: '1', dirs: [] })],
      ['half-written', '{"daemon":"agent","pid":12'],
    ];
    for (const [what, text] of cases) {
      const s = stateDir();
      await mkdir(join(s, 'run'), { recursive: true });
      await writeFile(pidFilePath(s, 'agent'), text);
      const claim = await claimPidFile(s, 'agent', { exclusive: true });
      expect({ what, record: await readPidFile(claim.path) }).toEqual({ what, record: claim.record });
      expect(claim.record).toMatchObject({ daemon: 'agent', pid: process.pid });
      await claim.release();
      expect(await readPidFile(claim.path)).toBeUndefined();
    }
  });

  it('a record of the same process is merged: the version and token an updater wrote stay', async () => {
    const s = stateDir();
    const child = await sleeper();
    // The updater, right after the spawn…
    await claimPidFile(s, 'agent', {
      exclusive: true,
      owner: child,
      version: '2.1.0',
      instance: 'ab'.repeat(16),
    });
    // …then the child itself, which knows neither.
    const own = await claimPidFile(s, 'agent', { exclusive: true, owner: child });
    expect(own.record).toEqual({
      daemon: 'agent',
      ...child,
      dirs: [],
      version: '2.1.0',
      instance: 'ab'.repeat(16),
    });
    expect(await livePidFile(s, 'agent')).toEqual(own.record);
  });

  it('release removes only the file that still names the claimant', async () => {
    const s = stateDir();
    const first = await claimPidFile(s, 'forwarder', { exclusive: false });
    const successor = await sleeper();
    await claimPidFile(s, 'forwarder', { exclusive: false, owner: successor });
    await first.release();
    expect((await readPidFile(pidFilePath(s, 'forwarder')))?.pid).toBe(successor.pid);
  });
});

describe('livePidFile', () => {
  it('names a live process only, and with `command` only one whose argv runs that daemon', async () => {
    const s = stateDir();
    const stranger = await sleeper();
    await claimPidFile(s, 'updater', { exclusive: true, owner: stranger, dirs: ['/opt/corral'] });
    expect((await livePidFile(s, 'updater'))?.pid).toBe(stranger.pid);
    // Its argv is `node -e …`, not `updater serve`: not an updater.
    expect(await livePidFile(s, 'updater', { command: true })).toBeUndefined();
    // A file under another daemon's name is not that daemon's.
    await mkdir(join(s, 'run'), { recursive: true });
    await writeFile(pidFilePath(s, 'forwarder'), await readFile(pidFilePath(s, 'updater')));
    expect(await livePidFile(s, 'forwarder')).toBeUndefined();
  });
});
