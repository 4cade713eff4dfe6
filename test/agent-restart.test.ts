import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/index.js';
import type { AgentStatus, ApplyAccepted, RestartResponse } from '../protocol/agent-api.js';
import { ErrorCode } from '../protocol/errors.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  sh,
  startAgent,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

let pki: TestPki;
let worker: TestWorker;
let agent: Agent;
let controller: ReturnType<typeof agentCaller>;

beforeAll(async () => {
  pki = await makePki();
  worker = await makeWorker(pki, '127.0.0.1:9', { hostId: 'restart-1' });
  agent = await startAgent(worker);
  controller = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
});

afterAll(async () => {
  await controller?.close();
  await agent?.close();
  await killServices(worker.stateDir);
  await rm(worker.stateDir, { recursive: true, force: true });
});

const status = async () => (await controller.call<AgentStatus>('GET', '/v1/status')).body;
const sleeper = async () => (await status()).services.find((s) => s.name === 'sleeper');

describe('agent POST /v1/restart', () => {
  it('restarts a running service: a new pid, the restart counted, still running', async () => {
    const applied = await controller.call<ApplyAccepted>('POST', '/v1/apply', {
      generation: 1,
      services: [sh('sleeper', 'exec sleep 300')],
    });
    expect(applied.status).toBe(202);
    const before = await waitFor('sleeper running', async () => {
      const s = await sleeper();
      return s?.state === 'running' && s.pid !== null ? s : undefined;
    });
    expect(before.restarts).toBe(0);

    const res = await controller.call<RestartResponse>('POST', '/v1/restart', { service: 'sleeper' });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ service: 'sleeper', restarts: 1, error: null });
    expect(res.body.pid).not.toBeNull();
    expect(res.body.pid).not.toBe(before.pid);

    const after = await waitFor('sleeper running again', async () => {
      const s = await sleeper();
      return s?.state === 'running' ? s : undefined;
    });
    expect(after.pid).toBe(res.body.pid);
    expect(after.restarts).toBe(1);
    let oldAlive = true;
    try {
      process.kill(before.pid as number, 0);
    } catch (e: unknown) {
      // ESRCH: the old process is gone, as it should be.
      oldAlive = !(e instanceof Error && 'code' in e && e.code === 'ESRCH');
    }
    expect(oldAlive).toBe(false);
  });

  it('refuses an unknown service with CORRAL_ERR_NOT_FOUND and changes nothing', async () => {
    const before = await sleeper();
    const res = await controller.call<{ error: { code: string } }>('POST', '/v1/restart', {
      service: 'nope',
    });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe(ErrorCode.NOT_FOUND);
    const after = await sleeper();
    expect(after?.pid).toBe(before?.pid);
    expect(after?.restarts).toBe(before?.restarts);
  });

  it('refuses a body without a service name', async () => {
    const res = await controller.call('POST', '/v1/restart', {});
    expect(res.status).toBe(400);
  });
});
