import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../pki/index.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  sh,
  startAgent,
  startControllerStandIn,
  waitFor,
  type TestPki,
} from './agent-fixture.js';

let pki: TestPki;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await makePki();
});

afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const fastBeats = { intervalMs: 100, minIntervalMs: 20, backoffBaseMs: 20, backoffCapMs: 200 };

describe('agent heartbeats (against a controller stand-in speaking protocol/heartbeat.ts)', () => {
  it('posts status, metrics and events, and drops events once acknowledged', async () => {
    const standIn = await startControllerStandIn(pki, { intervalMs: 100 });
    const worker = await makeWorker(pki, standIn.address, { hostId: 'hb-1' });
    const agent = await startAgent(worker, { heartbeat: fastBeats });
    const c = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
    cleanups.push(async () => {
      await c.close();
      await agent.close();
      await standIn.close();
      await killServices(worker.stateDir);
      await rm(worker.stateDir, { recursive: true, force: true });
    });
    await c.call('POST', '/v1/apply', { generation: 3, services: [sh('s1', 'exec sleep 300')] });
    const beat = await waitFor('a heartbeat reporting generation 3', () =>
      standIn.heartbeats.find((h) => h.generation === 3 && h.services[0]?.state === 'running'),
    );
    expect(beat).toMatchObject({ hostId: 'hb-1', agentVersion: '9.9.9-test' });
    expect(beat.metrics.memTotalBytes).toBeGreaterThan(0);
    const types = () => [...standIn.events.values()].map((e) => e.type);
    await waitFor('apply-finished delivered', () => types().includes('apply-finished'));
    expect(types()).toContain('agent-started');
    const finished = [...standIn.events.values()].find((e) => e.type === 'apply-finished');
    expect(finished?.generation).toBe(3);
    // Acknowledged events are not sent again.
    const seen = standIn.heartbeats.length;
    await waitFor('more heartbeats', () => standIn.heartbeats.length > seen + 3);
    expect(standIn.deliveries()).toBe(standIn.events.size);
  });

  it('rides out a controller outage and re-sends the events it missed', async () => {
    let standIn = await startControllerStandIn(pki, { intervalMs: 100 });
    const port = standIn.port;
    const worker = await makeWorker(pki, standIn.address, { hostId: 'hb-2' });
    const agent = await startAgent(worker, {
      heartbeat: fastBeats,
      restart: { maxRestarts: 1, baseDelayMs: 10 },
    });
    const c = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
    cleanups.push(async () => {
      await c.close();
      await agent.close();
      await standIn.close();
      await killServices(worker.stateDir);
      await rm(worker.stateDir, { recursive: true, force: true });
    });
    await waitFor('first heartbeat', () => standIn.heartbeats.length > 0);
    await standIn.close();
    // While the controller is down, a service crash-loops: its events wait in the outbox.
    await c.call('POST', '/v1/apply', { generation: 1, services: [sh('crashy', 'exit 1')] });
    await waitFor('crashy failed', async () => {
      const st = (await c.call<{ services: { state: string }[] }>('GET', '/v1/status')).body;
      return st.services[0]?.state === 'failed';
    });
    standIn = await startControllerStandIn(pki, { intervalMs: 100, port });
    const types = () => [...standIn.events.values()].map((e) => `${e.type}:${e.service ?? ''}`);
    await waitFor('missed events delivered', () =>
      ['service-restarted:crashy', 'service-failed:crashy', 'apply-finished:'].every((t) =>
        types().includes(t),
      ),
    );
  });

  it('renews its own and the updater certificate before expiry, and serves the new one', async () => {
    const standIn = await startControllerStandIn(pki, { intervalMs: 100 });
    const soon = new Date(Date.now() + 2 * 86_400_000);
    const worker = await makeWorker(pki, standIn.address, {
      hostId: 'hb-3',
      agentNotAfter: soon,
      updaterNotAfter: soon,
    });
    const agent = await startAgent(worker, { heartbeat: { ...fastBeats, renewBeforeMs: 7 * 86_400_000 } });
    cleanups.push(async () => {
      await agent.close();
      await standIn.close();
      await rm(worker.stateDir, { recursive: true, force: true });
    });
    await waitFor('two renewals', () => standIn.renewals.length === 2);
    const renewed = Object.fromEntries(standIn.renewals.map((r) => [r.role, r.fingerprint]));
    expect(Object.keys(renewed).sort()).toEqual(['agent', 'updater']);
    expect(renewed.agent).not.toBe(worker.agentFingerprint);
    const bundle = await waitFor('bundle holds both new certificates', async () => {
      const b = await loadBundle(join(worker.stateDir, 'bundle'));
      const ok =
        b.identities.agent?.fingerprint === renewed.agent &&
        b.identities.updater?.fingerprint === renewed.updater;
      return ok ? b : undefined;
    });
    expect(bundle.identities.agent?.notAfter.getTime()).toBeGreaterThan(Date.now() + 30 * 86_400_000);
    // New connections see the renewed certificate: the new pin works, the old one does not.
    const fresh = agentCaller(agent.address, pki.controllerClient, renewed.agent ?? '');
    const stale = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
    try {
      expect((await fresh.call('GET', '/v1/health')).status).toBe(200);
      await expect(stale.call('GET', '/v1/health')).rejects.toMatchObject({
        code: 'CORRAL_ERR_PIN_MISMATCH',
      });
    } finally {
      await fresh.close();
      await stale.close();
    }
    // Heartbeats go on with the renewed certificate, and nothing is renewed again.
    const seen = standIn.heartbeats.length;
    await waitFor('heartbeats after renewal', () => standIn.heartbeats.length > seen + 2);
    expect(standIn.renewals).toHaveLength(2);
  });
});
