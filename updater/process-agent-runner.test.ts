import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentRelease } from './agent-runner.js';
import { ProcessAgentRunner } from './process-agent-runner.js';

/** An "agent" that takes a while to stop after SIGTERM, so a close that does not wait shows. */
const SLOW_TO_STOP = `process.on('SIGTERM', () => setTimeout(() => process.exit(0), 300)); setInterval(() => {}, 1000);`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-agent-runner-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Running (a zombie waiting to be reaped counts as gone), from `/proc/<pid>/stat`. */
function alive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

describe('ProcessAgentRunner close()', () => {
  it('a second close() resolves after the first, with the agent stopped', async () => {
    const runner = new ProcessAgentRunner({
      stateDir: dir,
      logFile: join(dir, 'agent.log'),
      command: () => ({ command: process.execPath, args: ['-e', SLOW_TO_STOP] }),
      env: { PATH: process.env['PATH'] },
      log: pino({ level: 'silent' }),
    });
    const release = { version: '1.0.0', dir, manifest: {} } as unknown as AgentRelease;
    await runner.restart(release);
    const { pid } = JSON.parse(await readFile(join(dir, 'run', 'agent.pid'), 'utf8')) as { pid: number };
    expect(alive(pid)).toBe(true);
    const order: string[] = [];
    const first = runner.close().then(() => order.push('first'));
    await runner.close().then(() => order.push('second'));
    expect(order).toEqual(['first', 'second']);
    expect(alive(pid)).toBe(false);
    await first;
  });
});
