import { readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/index.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import type { LifecycleEvent, ServiceStatus } from '../protocol/heartbeat.js';
import {
  agentCaller,
  groupPids,
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
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await makePki();
});

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** An in-process agent (heartbeats off) with a pinned controller-client caller. */
async function setup(extra: Parameters<typeof startAgent>[1] = {}) {
  const worker: TestWorker = await makeWorker(pki, '127.0.0.1:9');
  const agent: Agent = await startAgent(worker, extra);
  const c = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
  cleanups.push(async () => {
    await c.close();
    await agent.close();
    await killServices(worker.stateDir);
    await rm(worker.stateDir, { recursive: true, force: true });
  });
  let generation = 0;
  const api = {
    worker,
    agent,
    async apply(services: unknown[]) {
      const res = await c.call('POST', '/v1/apply', { generation: ++generation, services });
      expect(res.status).toBe(202);
    },
    call: c.call,
    status: async () => (await c.call<AgentStatus>('GET', '/v1/status')).body,
    async service(name: string): Promise<ServiceStatus | undefined> {
      return (await api.status()).services.find((s) => s.name === name);
    },
    /** Lifecycle events waiting in the outbox (what the next heartbeat carries). */
    async events(): Promise<LifecycleEvent[]> {
      const text = await readFile(join(worker.stateDir, 'outbox.json'), 'utf8').catch(() => '');
      return text ? (JSON.parse(text) as { events: LifecycleEvent[] }).events : [];
    },
  };
  return api;
}

describe('agent supervision (real child processes)', () => {
  it('starts every service of an apply and reports apply-finished', async () => {
    const a = await setup();
    await a.apply([sh('a', 'exec sleep 300'), sh('b', 'exec sleep 300'), sh('c', 'exec sleep 300')]);
    const s = await waitFor('all running', async () => {
      const st = await a.status();
      return st.services.filter((x) => x.state === 'running').length === 3 ? st : undefined;
    });
    for (const svc of s.services) expect(await groupPids(svc.pid ?? 0)).toEqual([svc.pid]);
    const finished = await waitFor('apply-finished', async () =>
      (await a.events()).find((e) => e.type === 'apply-finished'),
    );
    expect(finished).toMatchObject({ generation: 1, detail: '0 remove, 0 replace, 3 start' });
  });

  it('restarts a crashed service with growing backoff', async () => {
    const a = await setup({ random: () => 1 });
    // Crashes twice (exit 3), then stays up.
    const script =
      'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ] && exec sleep 300; exit 3';
    await a.apply([sh('flaky', script)]);
    const svc = await waitFor('flaky running after two restarts', async () => {
      const s = await a.service('flaky');
      return s?.state === 'running' && s.restarts === 2 ? s : undefined;
    });
    expect(svc.lastError).toBe('exited with code 3');
    const restarts = (await a.events()).filter((e) => e.type === 'service-restarted').map((e) => e.detail);
    // random() = 1 makes the jitter deterministic: 20 ms, then 40 ms (base 20, doubling).
    expect(restarts).toEqual([
      'exited with code 3; restart 1 after 20 ms',
      'exited with code 3; restart 2 after 40 ms',
    ]);
  });

  it('marks a crash-looping service failed with the reason', async () => {
    const a = await setup({ restart: { baseDelayMs: 10, maxDelayMs: 40, maxRestarts: 3, windowMs: 60_000 } });
    await a.apply([sh('loop', 'echo dying >&2; exit 7')]);
    const svc = await waitFor('loop failed', async () => {
      const s = await a.service('loop');
      return s?.state === 'failed' ? s : undefined;
    });
    expect(svc.restarts).toBe(3);
    expect(svc.pid).toBeNull();
    expect(svc.lastError).toBe('gave up after 3 restarts in 60 s; last: exited with code 7');
    const failed = await waitFor('service-failed event', async () =>
      (await a.events()).find((e) => e.type === 'service-failed'),
    );
    expect(failed).toMatchObject({ service: 'loop', detail: svc.lastError });
  });

  it('follows the restart policy on a clean exit and on a failure', async () => {
    const a = await setup();
    await a.apply([
      sh('once', 'exit 0', { restart: 'never' }),
      sh('oncefail', 'exit 2', { restart: 'never' }),
      sh('onfail', 'exit 0', { restart: 'on-failure' }),
    ]);
    await waitFor('all ended', async () => {
      const st = await a.status();
      const by = Object.fromEntries(st.services.map((s) => [s.name, s.state]));
      return by.once === 'stopped' && by.oncefail === 'failed' && by.onfail === 'stopped';
    });
    expect((await a.service('oncefail'))?.lastError).toBe('exited with code 2');
  });

  it('teardown stops whole process groups, SIGKILL after the grace period', async () => {
    const a = await setup();
    await a.apply([
      sh('family', 'sleep 300 & sleep 300 & wait'),
      sh('stubborn', 'trap "" TERM; sleep 300 & wait', { stopGraceMs: 300 }),
    ]);
    const pgids = await waitFor('both running with children', async () => {
      const st = await a.status();
      const ids = st.services.map((s) => s.pid ?? 0);
      if (ids.length !== 2 || ids.includes(0)) return undefined;
      const sizes = await Promise.all(ids.map((g) => groupPids(g)));
      return sizes.every((p) => p.length >= 2) ? ids : undefined;
    });
    const res = await a.call<{ stopped: string[] }>('POST', '/v1/teardown', {});
    expect(res.status).toBe(202);
    expect(res.body.stopped).toEqual(['family', 'stubborn']);
    await waitFor('teardown-finished', async () =>
      (await a.events()).some((e) => e.type === 'teardown-finished'),
    );
    for (const pgid of pgids) expect(await groupPids(pgid)).toEqual([]);
    expect((await a.status()).services).toEqual([]);
  });

  it('replaces a service whose spec changed, and keeps one that did not', async () => {
    const a = await setup();
    await a.apply([sh('keep', 'exec sleep 300'), sh('change', 'exec sleep 300')]);
    const before = await waitFor('running', async () => {
      const st = await a.status();
      return st.services.every((s) => s.state === 'running') && st.services.length === 2 ? st : undefined;
    });
    await a.apply([sh('keep', 'exec sleep 300'), sh('change', 'exec sleep 301')]);
    await a.agent.idle();
    const after = await a.status();
    const pid = (st: AgentStatus, n: string) => st.services.find((s) => s.name === n)?.pid ?? 0;
    expect(pid(after, 'keep')).toBe(pid(before, 'keep'));
    expect(pid(after, 'change')).not.toBe(pid(before, 'change'));
    expect(await groupPids(pid(before, 'change'))).toEqual([]);
  });

  it('lets a newer apply supersede a running one', async () => {
    const a = await setup({ concurrency: 1 });
    await a.apply(Array.from({ length: 20 }, (_, i) => sh(`old-${i}`, 'exec sleep 300')));
    await a.apply([sh('new', 'exec sleep 300')]);
    await a.agent.idle();
    const st = await waitFor('only the new set', async () => {
      const s = await a.status();
      return s.services.length === 1 && s.services[0]?.state === 'running' ? s : undefined;
    });
    expect(st.services[0]?.name).toBe('new');
    expect(st.generation).toBe(2);
  });

  it('marks a service degraded while its health check fails, and running again after', async () => {
    const a = await setup();
    const check = {
      type: 'command' as const,
      command: '/bin/sh',
      args: ['-c', 'test -f ok'],
      intervalMs: 100,
      timeoutMs: 1000,
      failureThreshold: 2,
    };
    await a.apply([sh('checked', 'touch ok; exec sleep 300', { healthCheck: check })]);
    await waitFor('running', async () => (await a.service('checked'))?.state === 'running');
    const okFile = join(a.worker.stateDir, 'services/checked/ok');
    await unlink(okFile);
    const degraded = await waitFor('degraded', async () => {
      const s = await a.service('checked');
      return s?.state === 'degraded' ? s : undefined;
    });
    expect(degraded.lastError).toContain('health command failed');
    await writeFile(okFile, '');
    await waitFor('running again', async () => (await a.service('checked'))?.state === 'running');
  });
});
