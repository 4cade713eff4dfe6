import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findCorralDaemons } from './corral-daemons.js';
import { claimPidFile, daemonOfArgv, pidFilePath } from '../../kit/pid-file.js';
import { bootId, identityOf, isSameProcess } from '../../kit/proc.js';
import { runReaper } from './reaper.js';

/** A real process whose argv reads like a Corral daemon's (it only sleeps). */
function fakeDaemon(words: readonly string[], cwd?: string): ChildProcess {
  return spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', 'corral.js', ...words], {
    stdio: 'ignore',
    ...(cwd ? { cwd } : {}),
  });
}

let root: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'corral-daemons-'));
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

async function started(c: ChildProcess): Promise<number> {
  children.push(c);
  await once(c, 'spawn');
  // The argv is in /proc once exec has happened.
  for (let i = 0; i < 200 && !(await identityOf(c.pid ?? 0)); i++)
    await new Promise((r) => setTimeout(r, 10));
  return c.pid ?? 0;
}

describe('daemonOfArgv', () => {
  it.each([
    [['node', 'bin/corral.js', 'updater', 'serve', '--state-dir', 'x'], 'updater'],
    [['node', 'bin/corral.js', 'forwarder', 'run', '--state-dir', 'x'], 'forwarder'],
    [['node', 'bin/corral.js', 'forwarder', 'status', '--state-dir', 'x'], undefined],
    [['node', 'bin/corral.js', 'agent', 'serve', '--state-dir', 'x'], 'agent'],
    [['node', 'bin/corral.js', 'controller', 'serve', '--config', 'serve'], 'controller'],
    [['node', 'bin/corral.js', 'updater', 'run'], undefined],
    [['node', 'serve', 'updater'], undefined],
  ] as const)('%j is %s', (argv, want) => {
    expect(daemonOfArgv(argv)).toBe(want);
  });
});

describe('findCorralDaemons', () => {
  it('finds the daemons of this state dir by pid file and by /proc, never a process that is not one', async () => {
    const state = join(root, 'state');
    const other = join(root, 'other');
    await mkdir(join(state, 'run'), { recursive: true });
    // By its command line only (no pid file), with a relative --state-dir resolved against its cwd.
    const updaterPid = await started(fakeDaemon(['updater', 'serve', '--state-dir', 'state'], root));
    // The forwarder of another state dir: not ours to stop.
    await started(fakeDaemon(['forwarder', 'run', `--state-dir=${other}`]));
    // A pid file naming a live process that is not a forwarder (a reused pid): ignored.
    const stranger = await started(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']));
    const strangerId = await identityOf(stranger);
    await writeFile(
      pidFilePath(state, 'forwarder'),
      JSON.stringify({ daemon: 'forwarder', ...strangerId, dirs: [] }),
    );
    const found = await findCorralDaemons(state);
    expect(found.map((d) => [d.name, d.process.pid, d.foundBy])).toEqual([
      ['updater', updaterPid, 'cmdline'],
    ]);

    // The forwarder itself, with its own pid file: found by it, with the directories it names.
    const fwdPid = await started(fakeDaemon(['forwarder', 'run', '--state-dir', state]));
    const fwdId = await identityOf(fwdPid);
    await writeFile(
      pidFilePath(state, 'forwarder'),
      JSON.stringify({ daemon: 'forwarder', ...fwdId, dirs: [join(root, 'releases')] }),
    );
    const again = await findCorralDaemons(state);
    expect(again.map((d) => [d.name, d.process.pid, d.foundBy, d.dirs])).toEqual([
      ['forwarder', fwdPid, 'pid-file', [join(root, 'releases')]],
      ['updater', updaterPid, 'cmdline', []],
    ]);
  });

  it('finds an updater by the pid file a node installed by the previous release has (same path, same fields)', async () => {
    const state = join(root, 'installed');
    // An installed node's updater runs with --config only: no --state-dir for the scan to see.
    const updater = await started(fakeDaemon(['updater', 'serve', '--config', join(root, 'worker.yaml')]));
    const id = await identityOf(updater);
    await mkdir(join(state, 'run'), { recursive: true });
    // Byte for byte what `updater serve` of the previous release wrote to STATE/run/updater.pid.
    await writeFile(
      join(state, 'run', 'updater.pid'),
      `${JSON.stringify({ daemon: 'updater', ...id, dirs: [join(root, 'opt')] })}\n`,
    );
    expect((await findCorralDaemons(state)).map((d) => [d.name, d.process.pid, d.foundBy, d.dirs])).toEqual([
      ['updater', updater, 'pid-file', [join(root, 'opt')]],
    ]);
    // And what this release writes there reads the same way.
    if (!id) throw new Error('no /proc entry');
    await claimPidFile(state, 'updater', { exclusive: false, owner: id, dirs: [join(root, 'opt')] });
    expect((await findCorralDaemons(state)).map((d) => [d.name, d.foundBy])).toEqual([
      ['updater', 'pid-file'],
    ]);
  });

  it('the reaper stops the daemons it was given, and leaves alone a pid whose start time is not the one planned', async () => {
    const victim = await started(fakeDaemon(['updater', 'serve', '--state-dir', join(root, 'x')]));
    const bystander = await started(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']));
    const victimId = await identityOf(victim);
    const bystanderId = await identityOf(bystander);
    if (!victimId || !bystanderId) throw new Error('no /proc entry');
    const report = await runReaper({
      version: 2,
      hostname: 'h',
      agent: null,
      daemons: [
        { name: 'updater', process: victimId },
        // As if the forwarder had exited and its pid been reused by another process.
        {
          name: 'forwarder',
          process: { ...bystanderId, startTime: String(Number(bystanderId.startTime) + 1) },
        },
      ],
      units: [],
      services: [],
      deleteDirs: [],
      keepDirs: [],
      logFile: null,
      containers: null,
      report: null,
      startDelayMs: 0,
    });
    expect(report.stoppedDaemons).toEqual([`updater (pid ${victim})`]);
    expect(report.errors).toEqual([]);
    expect(await isSameProcess(victimId)).toBe(false);
    expect(await isSameProcess({ ...bystanderId, bootId: await bootId() })).toBe(true);
  });
});
