import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  groupPids,
  killServices,
  makePki,
  makeWorker,
  sh,
  spawnCorral,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

/**
 * `corral agent serve` as a real process, with a slow shutdown: a service that outlives
 * SIGTERM and has a two-minute stop grace is being torn down when the agent is told to stop,
 * so the agent's drain waits on it. A second SIGTERM must end the process at once.
 */
let pki: TestPki;
let worker: TestWorker;
let agent: ReturnType<typeof spawnCorral> | undefined;

beforeAll(async () => {
  pki = await makePki();
  worker = await makeWorker(pki, '127.0.0.1:9', { hostId: 'stubborn-host' });
});

afterAll(async () => {
  if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  await killServices(worker.stateDir);
  await rm(worker.stateDir, { recursive: true, force: true });
});

describe('agent serve and a second signal', () => {
  it('exits at once on a second SIGTERM while the first is still draining a slow service stop', async () => {
    agent = spawnCorral([
      'agent',
      'serve',
      '--state-dir',
      worker.stateDir,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'info',
    ]);
    const running = agent;
    const exited = once(running, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    const address = await waitFor(
      `agent listening (${running.output()})`,
      async () => (await readEndpointsFile(worker.stateDir))?.agent,
    );
    const marker = join(worker.stateDir, 'got-term');
    const c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    let pid: number;
    try {
      await c.call('POST', '/v1/apply', {
        generation: 1,
        services: [
          sh('stubborn', `trap 'echo term >> ${marker}' TERM; while :; do sleep 1; done`, {
            stopGraceMs: 120_000,
          }),
        ],
      });
      pid = await waitFor('service running', async () => {
        const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        const s = st.services.find((x) => x.name === 'stubborn');
        return s?.state === 'running' ? s.pid : undefined;
      });
      const teardown = await c.call('POST', '/v1/teardown', {});
      expect(teardown.status).toBe(202);
    } finally {
      await c.close();
    }
    // The stop has begun (SIGTERM delivered, the grace running): the agent's drain now waits on it.
    await waitFor('the service got SIGTERM', async () =>
      (await readFile(marker, 'utf8').catch(() => '')).includes('term'),
    );

    running.kill('SIGTERM');
    await waitFor('first SIGTERM seen', () => running.output().includes('"signal":"SIGTERM"'));
    expect(running.exitCode).toBeNull(); // still draining: the service's grace has ~2 minutes left

    running.kill('SIGTERM');
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 1, signal: null });
    expect(running.output()).toContain('second SIGTERM: exiting at once');
    // The agent left while the stop it was waiting on had not finished: the service still runs.
    expect(await groupPids(pid)).toContain(pid);
  }, 60_000);
});
