import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino, type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
        processFile: join(dir, `p-${Math.random()}.json`),
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
      processFile: join(dir, 'none.json'),
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
