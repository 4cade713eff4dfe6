import { access, mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AGENT_LOCAL_HEALTH_PATH } from '../protocol/agent-local.js';
import { startLocalHealth } from './local-health.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-local-health-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

function get(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: AGENT_LOCAL_HEALTH_PATH }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

describe('local health close()', () => {
  it('a second close() resolves after the first, with the socket gone', async () => {
    const path = join(dir, 'agent.sock');
    const server = await startLocalHealth(path, () => ({
      version: '0.1.0',
      pid: process.pid,
      uptimeSeconds: 1,
    }));
    expect(await get(path)).toBe(200);
    const order: string[] = [];
    const first = server.close().then(() => order.push('first'));
    const second = server.close().then(() => order.push('second'));
    await second;
    expect(order).toEqual(['first', 'second']);
    expect(await exists(path)).toBe(false);
    await first;
    await expect(get(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
