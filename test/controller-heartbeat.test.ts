import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa } from '../pki/index.js';
import type { HostDetail, HostListResponse } from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import { HEADER_CONTROLLER_LIST } from '../protocol/constants.js';
import { HeartbeatResponse } from '../protocol/heartbeat.js';
import { Value } from '@sinclair/typebox/value';
import {
  agentMaterial,
  heartbeatBody,
  lifecycleEvent,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
beforeAll(async () => {
  t = await startController({ heartbeatIntervalMs: 30_000 });
});
afterAll(async () => {
  await t.close();
});

const FORBIDDEN = {
  error: { code: ErrorCode.FORBIDDEN, message: 'client certificate is not accepted here' },
};

describe('heartbeats over mutual TLS', () => {
  it('accepts a pinned agent, stores what it reports, and acknowledges events once committed', async () => {
    const web = await t.enroll('web-1', { labels: { role: 'web' } });
    const before = await t.admin<HostDetail>('GET', '/v1/hosts/web-1');
    expect(before.body.host.status).toBe('pending');

    await using client = workerClient(t.endpoints.worker, agentMaterial(web));
    const events = [
      lifecycleEvent(),
      lifecycleEvent({ type: 'service-restarted', service: 'api', detail: 'exit 1' }),
    ];
    const hb = heartbeatBody(web.hostId, {
      agentVersion: '1.2.3',
      generation: 4,
      services: [
        {
          name: 'api',
          state: 'running',
          restarts: 1,
          lastError: 'exit 1',
          pid: 4242,
          since: new Date().toISOString(),
        },
      ],
      events,
    });
    const res = await postJson(client, '/v1/heartbeat', hb);
    expect(res.status).toBe(200);
    expect(res.body.ackedEventIds).toEqual(events.map((e) => e.id));
    expect(res.body.intervalMs).toBe(30_000);

    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/web-1')).body;
    expect(detail.host).toMatchObject({
      status: 'online',
      agentVersion: '1.2.3',
      generation: 4,
      labels: { role: 'web' },
      agentFingerprint: web.agent.fingerprint,
      updaterFingerprint: web.updater.fingerprint,
      metrics: hb.metrics,
    });
    expect(detail.host.lastSeen).not.toBeNull();
    expect(detail.services).toEqual([
      expect.objectContaining({ name: 'api', state: 'running', restarts: 1, pid: 4242 }),
    ]);
    expect(detail.recentEvents.map((e) => e.id).sort()).toEqual(events.map((e) => e.id).sort());

    // The agent re-sends events until acknowledged: a re-send is acknowledged again, stored once.
    const again = await postJson(client, '/v1/heartbeat', { ...hb, services: [] });
    expect(again.body.ackedEventIds).toEqual(events.map((e) => e.id));
    const after = (await t.admin<HostDetail>('GET', '/v1/hosts/web-1')).body;
    expect(after.recentEvents).toHaveLength(2);
    expect(after.services).toEqual([]);
  });

  it('lists the controllers only to an agent that asks (x-corral-controllers: 1)', async () => {
    const web = await t.enroll('list-1');
    await using client = workerClient(t.endpoints.worker, agentMaterial(web));
    const plain = await postJson(client, '/v1/heartbeat', heartbeatBody(web.hostId));
    expect(plain.status).toBe(200);
    // An agent whose answer schema predates the field never gets it.
    expect(Object.keys(plain.body).sort()).toEqual(['ackedEventIds', 'intervalMs', 'serverTime']);
    const asked = await client.request({
      method: 'POST',
      path: '/v1/heartbeat',
      headers: { 'content-type': 'application/json', [HEADER_CONTROLLER_LIST]: '1' },
      body: JSON.stringify(heartbeatBody(web.hostId)),
    });
    expect(asked.statusCode).toBe(200);
    const body = (await asked.body.json()) as HeartbeatResponse;
    expect(Value.Check(HeartbeatResponse, body)).toBe(true);
    // One controller on SQLite: the list is this one.
    expect(body.controllers?.map((c) => c.worker)).toEqual([t.endpoints.worker]);
  });

  it('refuses, with the same 403, an unpinned certificate of our CA, another host id, and a non-agent role', async () => {
    const a = await t.enroll('fc-a');
    const b = await t.enroll('fc-b');
    const ca = t.identity.ca;

    // A certificate our CA really signed, with the agent role, but never pinned.
    const rogue = await ca.issue({ role: 'agent', hostId: a.hostId, commonName: 'rogue' });
    await using rogueClient = workerClient(t.endpoints.worker, { caPem: ca.certPem, ...rogue });
    const unknown = await postJson(rogueClient, '/v1/heartbeat', heartbeatBody(a.hostId));

    // A pinned agent claiming another host's id.
    await using aClient = workerClient(t.endpoints.worker, agentMaterial(a));
    const mismatch = await postJson(aClient, '/v1/heartbeat', heartbeatBody(b.hostId));

    // A valid certificate of another role (operator) from our CA.
    const operator = await ca.issue({ role: 'operator', commonName: 'ops' });
    await using opClient = workerClient(t.endpoints.worker, { caPem: ca.certPem, ...operator });
    const wrongRole = await postJson(opClient, '/v1/heartbeat', heartbeatBody(a.hostId));

    for (const res of [unknown, mismatch, wrongRole]) {
      expect(res.status).toBe(403);
      expect(res.body).toEqual(FORBIDDEN);
    }
    // And the host the refused calls named was not touched.
    const hosts = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body.hosts;
    expect(hosts.find((h) => h.name === 'fc-b')?.status).toBe('pending');
  });

  it('refuses a client without a certificate: at the handshake on the worker port, 403 on the join port', async () => {
    const a = await t.enroll('fc-nocert');
    await using bare = workerClient(t.endpoints.worker, { caPem: t.identity.ca.certPem });
    await expect(postJson(bare, '/v1/heartbeat', heartbeatBody(a.hostId))).rejects.toThrow();
    await using joinPort = workerClient(t.endpoints.join, { caPem: t.identity.ca.certPem });
    const res = await postJson(joinPort, '/v1/heartbeat', heartbeatBody(a.hostId));
    expect(res.status).toBe(403);
    expect(res.body).toEqual(FORBIDDEN);
  });

  it('refuses a certificate from another CA at the handshake', async () => {
    const a = await t.enroll('fc-otherca');
    const other = await createCa();
    const impostor = await other.issue({ role: 'agent', hostId: a.hostId, commonName: 'impostor' });
    await using client = workerClient(t.endpoints.worker, { caPem: t.identity.ca.certPem, ...impostor });
    await expect(postJson(client, '/v1/heartbeat', heartbeatBody(a.hostId))).rejects.toThrow();
  });

  it('validates the body against the schema and caps its size', async () => {
    const a = await t.enroll('fc-schema');
    await using client = workerClient(t.endpoints.worker, agentMaterial(a));
    const bad = await postJson(client, '/v1/heartbeat', { ...heartbeatBody(a.hostId), extra: 1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.code).toBe(ErrorCode.VALIDATION);
    const wrongType = await postJson(client, '/v1/heartbeat', {
      ...heartbeatBody(a.hostId),
      generation: '1',
    });
    expect(wrongType.status).toBe(400);
    const huge = await postJson(client, '/v1/heartbeat', {
      ...heartbeatBody(a.hostId),
      agentVersion: 'x'.repeat(400 * 1024),
    });
    expect(huge.status).toBe(413);
    expect(huge.body.error?.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
  });

  it('counts accepted and refused heartbeats by reason in /metrics', async () => {
    const res = await t.admin<string>('GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.body).toMatch(/^corral_heartbeats_accepted_total [1-9]/m);
    // The rogue agent and the operator: neither fingerprint is pinned.
    expect(res.body).toMatch(/^corral_heartbeats_rejected_total\{reason="unknown-certificate"\} [2-9]/m);
    expect(res.body).toMatch(/^corral_heartbeats_rejected_total\{reason="host-mismatch"\} [1-9]/m);
    expect(res.body).toMatch(/^corral_heartbeats_rejected_total\{reason="validation"\} [1-9]/m);
    expect(res.body).toMatch(/^corral_heartbeats_rejected_total\{reason="too-large"\} [1-9]/m);
    expect(res.body).toMatch(/^corral_hosts\{status="online"\} [1-9]/m);
    expect(res.body).toMatch(
      /^corral_http_request_duration_seconds_count\{listener="worker",route="\/v1\/heartbeat",status="2xx"\} [1-9]/m,
    );
  });
});

describe('liveness from heartbeat age', () => {
  it('goes pending → online → stale → offline, and back online, without touching anything else', async () => {
    // The controller's clock is driven by the test: each status is read at a chosen heartbeat
    // age, on both sides of each threshold, so no step depends on how fast the machine is.
    const intervalMs = 30_000;
    let nowMs = Date.now();
    await using fast = await startController({
      heartbeatIntervalMs: intervalMs,
      clock: { now: () => nowMs },
    });
    const web = await fast.enroll('live-1');
    const status = async (): Promise<string> =>
      (await fast.admin<HostDetail>('GET', '/v1/hosts/live-1')).body.host.status;
    const listed = async (s: string): Promise<string[]> =>
      (await fast.admin<HostListResponse>('GET', `/v1/hosts?status=${s}`)).body.hosts.map((h) => h.name);
    expect(await status()).toBe('pending');
    nowMs += 10 * intervalMs;
    expect(await status()).toBe('pending');

    await using client = workerClient(fast.endpoints.worker, agentMaterial(web));
    const hb = heartbeatBody(web.hostId, {
      services: [{ name: 'api', state: 'running', restarts: 0, lastError: null, pid: 7, since: null }],
    });
    expect((await postJson(client, '/v1/heartbeat', hb)).status).toBe(200);
    const seenMs = nowMs;
    const at = async (ageMs: number): Promise<string> => {
      nowMs = seenMs + ageMs;
      return status();
    };
    expect(await at(0)).toBe('online');
    expect(await listed('online')).toEqual(['live-1']);
    expect(await at(2 * intervalMs - 1)).toBe('online');
    expect(await at(2 * intervalMs)).toBe('stale');
    expect(await listed('stale')).toEqual(['live-1']);
    expect(await at(3 * intervalMs - 1)).toBe('stale');
    expect(await at(3 * intervalMs)).toBe('offline');
    expect(await listed('offline')).toEqual(['live-1']);
    expect(await at(100 * intervalMs)).toBe('offline');

    // Offline destroyed nothing: pins and observed services are intact, and it comes back.
    const detail = (await fast.admin<HostDetail>('GET', '/v1/hosts/live-1')).body;
    expect(detail.services.map((s) => s.name)).toEqual(['api']);
    expect(detail.host.agentFingerprint).toBe(web.agent.fingerprint);
    expect((await postJson(client, '/v1/heartbeat', hb)).status).toBe(200);
    expect(await status()).toBe('online');
    expect(await listed('offline')).toEqual([]);
  });
});
