import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type {
  CheckResponse,
  DecommissionResponse,
  HostDetail,
  HostListResponse,
} from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import { PkiErrorCode } from '../pki/index.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  standInAgent,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
beforeAll(async () => {
  t = await startController({ decommissionWaitMs: 1_000 });
});
afterAll(async () => {
  await t.close();
});

type Err = { error: { code: string; message: string } };

describe('decommission', () => {
  it('asks the agent to self-destruct, refuses the certificate from then on and closes its live connection', async () => {
    const agent = await standInAgent();
    try {
      const web = await t.enroll('gone-1', { agentPort: agent.port });
      agent.arm(agentMaterial(web), web.hostId);
      const client = workerClient(t.endpoints.worker, agentMaterial(web));
      const disconnected = once(client, 'disconnect');
      expect((await postJson(client, '/v1/heartbeat', heartbeatBody(web.hostId))).status).toBe(200);

      const res = await t.admin<DecommissionResponse>('POST', '/v1/hosts/gone-1/decommission');
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        host: { name: 'gone-1', status: 'decommissioned', agentFingerprint: null, updaterFingerprint: null },
        selfDestruct: { ok: true, message: null },
        closedConnections: 1,
      });
      // The controller called the agent as the pinned controller-client, with the host id guard.
      expect(agent.calls).toEqual([
        {
          method: 'POST',
          path: '/v1/self-destruct',
          body: { hostId: web.hostId },
          peer: { role: 'controller-client', fingerprint: web.manifest.controllerClientFingerprint },
        },
      ]);
      // The open keep-alive connection was closed by the controller…
      await disconnected;
      // …and a new connection with the same certificate is refused, told (it alone) that its
      // host is decommissioned; every other caller's 403 is checked in decommission-notice.
      await using again = workerClient(t.endpoints.worker, agentMaterial(web));
      const refused = await postJson(again, '/v1/heartbeat', heartbeatBody(web.hostId));
      expect([refused.status, refused.body.error?.code]).toEqual([410, ErrorCode.DECOMMISSIONED]);
      const renew = await postJson(again, '/v1/renew', { role: 'agent', csrPem: 'x' });
      expect(renew.status).toBe(410);
      await client.destroy();
    } finally {
      await agent.close();
    }
  });

  it('still decommissions when the agent cannot be reached, and the name can be enrolled again', async () => {
    const web = await t.enroll('gone-2', { agentPort: 1 });
    const res = await t.admin<DecommissionResponse>('POST', '/v1/hosts/gone-2/decommission');
    expect(res.status).toBe(200);
    expect(res.body.selfDestruct.ok).toBe(false);
    expect(res.body.selfDestruct.message).toMatch(/^CORRAL_ERR_/);
    expect(res.body.host.status).toBe('decommissioned');

    const again = await t.admin<Err>('POST', '/v1/hosts/gone-2/decommission');
    expect([again.status, again.body.error.code]).toEqual([409, ErrorCode.CONFLICT]);
    const missing = await t.admin<Err>('POST', '/v1/hosts/never-was/decommission');
    expect([missing.status, missing.body.error.code]).toEqual([404, ErrorCode.NOT_FOUND]);

    const reborn = await t.enroll('gone-2');
    expect(reborn.hostId).not.toBe(web.hostId);
    expect(reborn.agent.fingerprint).not.toBe(web.agent.fingerprint);
    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/gone-2')).body;
    expect(detail.host).toMatchObject({ id: reborn.hostId, status: 'pending' });
    const listed = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body.hosts.filter(
      (h) => h.name === 'gone-2',
    );
    expect(listed.map((h) => h.status).sort()).toEqual(['decommissioned', 'pending']);
    // The old identity stays refused (told it is decommissioned) even though the name lives again.
    await using old = workerClient(t.endpoints.worker, agentMaterial(web));
    expect((await postJson(old, '/v1/heartbeat', heartbeatBody(web.hostId))).status).toBe(410);
  });
});

describe('controller check', () => {
  it('probes every agent over mutual TLS with its pin, and reports who answered and why not', async () => {
    await using c = await startController();
    const good = await standInAgent();
    const impostor = await standInAgent();
    try {
      const ok = await c.enroll('chk-ok', { agentPort: good.port });
      good.arm(agentMaterial(ok), ok.hostId);
      const pinned = await c.enroll('chk-pin', { agentPort: impostor.port });
      // Same CA, same host id and role, but not the certificate the controller pinned.
      const unpinned = await c.identity.ca.issue({ role: 'agent', hostId: pinned.hostId, commonName: 'x' });
      impostor.arm(
        { caPem: pinned.caPem, certPem: unpinned.certPem, keyPem: unpinned.keyPem },
        pinned.hostId,
      );
      await c.enroll('chk-down', { agentPort: 1 });
      const gone = await c.enroll('chk-gone', { agentPort: 1 });
      expect(gone.hostId).toBeDefined();
      expect((await c.admin('POST', '/v1/hosts/chk-gone/decommission')).status).toBe(200);

      const res = await c.admin<CheckResponse>('POST', '/v1/check', { timeoutMs: 3_000 });
      expect(res.status).toBe(200);
      const by = Object.fromEntries(res.body.results.map((r) => [r.name, r]));
      expect(Object.keys(by).sort()).toEqual(['chk-down', 'chk-ok', 'chk-pin']);
      expect(by['chk-ok']).toMatchObject({
        reachable: true,
        agentVersion: '9.9.9',
        error: null,
        status: 'pending',
      });
      expect(by['chk-pin']).toMatchObject({ reachable: false, error: { code: PkiErrorCode.PIN_MISMATCH } });
      expect(by['chk-down']).toMatchObject({ reachable: false, error: { code: ErrorCode.UNAVAILABLE } });
      // The impostor never saw a request: the pin failed the handshake before any was sent.
      expect(impostor.calls).toEqual([]);
      expect(good.calls[0]?.peer?.role).toBe('controller-client');
    } finally {
      await good.close();
      await impostor.close();
    }
  });
});
