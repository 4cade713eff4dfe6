import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr, identityFromPem } from '../pki/index.js';
import type { AuditListResponse } from '../protocol/admin-audit.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import type { RenewResponse } from '../protocol/enrollment.js';
import { ErrorCode } from '../protocol/errors.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
beforeAll(async () => {
  t = await startController();
});
afterAll(async () => {
  await t.close();
});

describe('certificate renewal over the current identity', () => {
  it('re-pins with no moment when neither certificate works', async () => {
    const web = await t.enroll('renew-1', { sans: ['renew-1.internal'] });
    const oldClient = workerClient(t.endpoints.worker, agentMaterial(web));
    const oldClosed = once(oldClient, 'disconnect');
    expect((await postJson(oldClient, '/v1/heartbeat', heartbeatBody(web.hostId))).status).toBe(200);

    const csr = await createCsr('whatever-the-worker-asks');
    const res = await postJson(oldClient, '/v1/renew', { role: 'agent', csrPem: csr.csrPem });
    expect(res.status).toBe(200);
    const renewed = res.body as unknown as RenewResponse;
    const id = identityFromPem(renewed.certPem);
    expect(id).toMatchObject({ role: 'agent', hostId: web.hostId, fingerprint: renewed.fingerprint });
    expect(renewed.fingerprint).not.toBe(web.agent.fingerprint);

    // Both work until the new one is used…
    expect((await postJson(oldClient, '/v1/heartbeat', heartbeatBody(web.hostId))).status).toBe(200);
    const pinsBefore = (await t.admin<HostDetail>('GET', '/v1/hosts/renew-1')).body.pins.filter(
      (p) => p.role === 'agent',
    );
    expect(pinsBefore.map((p) => [p.fingerprint, p.superseded]).sort()).toEqual(
      [
        [web.agent.fingerprint, true],
        [renewed.fingerprint, false],
      ].sort(),
    );
    await using newClient = workerClient(t.endpoints.worker, {
      caPem: web.caPem,
      certPem: renewed.certPem,
      keyPem: csr.keyPem,
    });
    expect((await postJson(newClient, '/v1/heartbeat', heartbeatBody(web.hostId))).status).toBe(200);

    // …then the old one is retired: its open connection is closed and it is refused.
    await oldClosed;
    await using late = workerClient(t.endpoints.worker, agentMaterial(web));
    await waitFor(
      async () => (await postJson(late, '/v1/heartbeat', heartbeatBody(web.hostId))).status === 403,
    );
    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/renew-1')).body;
    expect(detail.host.agentFingerprint).toBe(renewed.fingerprint);
    expect(detail.pins.filter((p) => p.role === 'agent').map((p) => p.fingerprint)).toEqual([
      renewed.fingerprint,
    ]);
    await oldClient.destroy();
  });

  it("renews the updater's certificate through the agent identity, and refuses a bad CSR", async () => {
    const web = await t.enroll('renew-2');
    await using client = workerClient(t.endpoints.worker, agentMaterial(web));
    const csr = await createCsr('updater');
    const res = await postJson(client, '/v1/renew', { role: 'updater', csrPem: csr.csrPem });
    expect(res.status).toBe(200);
    const renewed = res.body as unknown as RenewResponse;
    expect(identityFromPem(renewed.certPem)).toMatchObject({ role: 'updater', hostId: web.hostId });
    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/renew-2')).body;
    expect(detail.host.updaterFingerprint).toBe(renewed.fingerprint);
    expect(t.controller.pins.fingerprintsFor(web.hostId, 'updater').sort()).toEqual(
      [web.updater.fingerprint, renewed.fingerprint].sort(),
    );

    const bad = await postJson(client, '/v1/renew', { role: 'agent', csrPem: 'not a csr' });
    expect([bad.status, bad.body.error?.code]).toEqual([400, ErrorCode.CSR_REFUSED]);
    const entries = (await t.admin<AuditListResponse>('GET', '/v1/audit?limit=1000')).body.entries;
    expect(entries.filter((e) => e.action === 'renew' && e.target === 'renew-2')).toEqual([
      expect.objectContaining({
        actor: 'host:renew-2',
        details: expect.objectContaining({ role: 'updater' }),
      }),
    ]);
  });
});
