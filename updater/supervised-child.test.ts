import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimPidFile, pidFilePath, readPidFile } from '../kit/pid-file.js';
import { identityOf, isAlive } from '../kit/proc.js';
import type { AgentRelease } from './agent-runner.js';
import { SupervisedChild } from './supervised-child.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-child-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function memoryLog(): { log: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines: () => lines };
}

const release = (dirPath: string): AgentRelease => ({
  version: '1.0.0',
  dir: dirPath,
  manifest: { version: '1.0.0', start: { command: 'x', args: [] }, include: ['x'] },
});

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`${what}: not reached`);
    await sleep(20);
  }
}

describe('a supervised child that cannot start', () => {
  it.each([
    [
      'a missing binary',
      () => ({ command: join(dir, 'no-such-node'), args: [] }),
      () => dir,
      'forwarder.log',
    ],
    [
      'a missing release dir (the prefix was deleted)',
      () => ({ command: process.execPath, args: ['-e', '0'] }),
      () => join(dir, 'gone'),
      'forwarder.log',
    ],
    [
      'a missing log dir',
      () => ({ command: process.execPath, args: ['-e', '0'] }),
      () => dir,
      join('missing-dir', 'forwarder.log'),
    ],
  ])(
    '%s is logged, retried with backoff, then given up on; nothing throws',
    async (_name, command, cwd, logName) => {
      const { log, lines } = memoryLog();
      const child = new SupervisedChild({
        name: 'forwarder',
        stateDir: join(dir, `s-${Math.random()}`),
        logFile: join(dir, logName),
        instanceEnv: 'CORRAL_TEST_INSTANCE',
        command,
        env: { PATH: process.env.PATH },
        log,
        superviseIntervalMs: 10,
        restartBaseMs: 5,
        restartCapMs: 20,
        maxStartAttempts: 3,
      });
      await child.restart(release(cwd()));
      expect(child.exitReason()).toMatch(/forwarder could not be started/);
      child.supervise(release(cwd()));
      await until('gave up', () => lines().some((l) => l.includes('keeps failing')));
      const restarts = lines().filter((l) => l.includes('forwarder down; restarting')).length;
      expect(restarts).toBe(3);
      expect(child.current()).toBeUndefined();
      await child.close();
    },
  );

  it('a release that names no such child starts nothing and is not retried', async () => {
    const { log, lines } = memoryLog();
    const child = new SupervisedChild({
      name: 'forwarder',
      stateDir: join(dir, 'none'),
      logFile: join(dir, 'none.log'),
      instanceEnv: 'CORRAL_TEST_INSTANCE',
      command: () => null,
      env: {},
      log,
      superviseIntervalMs: 10,
    });
    await child.restart(release(dir));
    child.supervise(release(dir));
    await sleep(200);
    expect(child.current()).toBeUndefined();
    expect(lines().filter((l) => l.includes('restarting'))).toEqual([]);
    await child.close();
  });
});

/** Sleeps until signalled; exits 0 on SIGTERM. */
const SLEEPER = `process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000);`;
const INSTANCE_ENV = 'CORRAL_TEST_INSTANCE';

function sleeperChild(stateDir: string, log: Logger): SupervisedChild {
  return new SupervisedChild({
    name: 'forwarder',
    stateDir,
    logFile: join(stateDir, 'forwarder.log'),
    instanceEnv: INSTANCE_ENV,
    command: () => ({ command: process.execPath, args: ['-e', SLEEPER] }),
    env: { PATH: process.env.PATH },
    log,
    superviseIntervalMs: 50,
  });
}

describe('a supervised child found again through STATE/run/<name>.pid', () => {
  it('is recorded there at once, adopted by the next supervisor, and stopped by it; the file goes with it', async () => {
    const stateDir = join(dir, 'adopt');
    await mkdir(stateDir);
    const first = sleeperChild(stateDir, memoryLog().log);
    await first.restart(release(dir));
    const started = first.current();
    if (!started) throw new Error('not started');
    const record = await readPidFile(pidFilePath(stateDir, 'forwarder'));
    const identity = await identityOf(started.pid);
    expect(record).toMatchObject({ daemon: 'forwarder', pid: started.pid, version: '1.0.0', dirs: [] });
    expect(record?.startTime).toBe(identity?.startTime);
    expect(record?.instance).toMatch(/^[0-9a-f]{32}$/);
    // The supervisor goes (a crash or update-self), the child stays.
    await first.close({ keepChild: true });
    expect(await isAlive(started.pid)).toBe(true);

    const { log, lines } = memoryLog();
    const second = sleeperChild(stateDir, log);
    expect(await second.adopt()).toBe('1.0.0');
    expect(second.current()).toEqual({ pid: started.pid, version: '1.0.0' });
    expect(lines().some((l) => l.includes('forwarder adopted'))).toBe(true);
    await second.close();
    expect(await isAlive(started.pid)).toBe(false);
    expect(await readPidFile(pidFilePath(stateDir, 'forwarder'))).toBeUndefined();
  });

  it('never adopts a process its file names but no updater started, nor a pid whose start time differs', async () => {
    const stateDir = join(dir, 'strangers');
    // A live process with a well-formed record of its own but no instance token in its
    // environment: a hand-started daemon.
    const stranger = spawn(process.execPath, ['-e', SLEEPER], { stdio: 'ignore' });
    await once(stranger, 'spawn');
    try {
      const id = await identityOf(stranger.pid ?? 0);
      if (!id) throw new Error('no /proc entry');
      await claimPidFile(stateDir, 'forwarder', { exclusive: false, owner: id, version: '1.0.0' });
      expect(await sleeperChild(stateDir, memoryLog().log).adopt()).toBeNull();

      // A child of an updater (token in its environment) whose record has another start time:
      // the pid was reused since the record was written.
      const token = 'ab'.repeat(16);
      const child = spawn(process.execPath, ['-e', SLEEPER], {
        stdio: 'ignore',
        env: { PATH: process.env.PATH, [INSTANCE_ENV]: token },
      });
      await once(child, 'spawn');
      try {
        const cid = await identityOf(child.pid ?? 0);
        if (!cid) throw new Error('no /proc entry');
        const stale = { ...cid, startTime: String(Number(cid.startTime) + 1) };
        await claimPidFile(stateDir, 'forwarder', {
          exclusive: false,
          owner: stale,
          version: '1.0.0',
          instance: token,
        });
        const supervisor = sleeperChild(stateDir, memoryLog().log);
        expect(await supervisor.adopt()).toBeNull();
        // The true record: adopted.
        await claimPidFile(stateDir, 'forwarder', {
          exclusive: false,
          owner: cid,
          version: '1.0.0',
          instance: token,
        });
        expect(await supervisor.adopt()).toBe('1.0.0');
        await supervisor.close();
        expect(await isAlive(cid.pid)).toBe(false);
      } finally {
        child.kill('SIGKILL');
      }
      expect(await isAlive(id.pid)).toBe(true);
    } finally {
      stranger.kill('SIGKILL');
    }
  });
});
