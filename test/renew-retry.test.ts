import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentIdentity } from '../agent/agent-identity.js';
import { createControllerClient } from '../agent/link/controller-client.js';
import { renewIfDue } from '../agent/link/renewal.js';
import { clientTlsOptions, createCsr, identityFromPem, writeBundle } from '../pki/index.js';
import type { EnrollResponse, RenewResponse } from '../protocol/enrollment.js';
import { parseHostPort } from '../kit/host-port.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  silentLog,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
let dir: string;
beforeAll(async () => {
  t = await startController();
  dir = await mkdtemp(join(tmpdir(), 'corral-renew-retry-'));
});
afterAll(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes an enrollment as the bundle a worker holds, and loads it as the agent does. */
async function bundleOf(e: EnrollResponse) {
  const bundleDir = join(dir, e.name);
  await writeBundle(bundleDir, {
    caPem: e.caPem,
    manifest: e.manifest,
    identities: {
      agent: { certPem: e.agent.certPem, keyPem: e.agent.keyPem },
      updater: { certPem: e.updater.certPem, keyPem: e.updater.keyPem },
    },
  });
  return loadAgentIdentity(bundleDir);
}

async function activePins(hostId: string, role: 'agent' | 'updater') {
  const rows = await t.db
    .selectFrom('pins')
    .select(['fingerprint', 'superseded_at'])
    .where('host_id', '=', hostId)
    .where('role', '=', role)
    .where('active', '=', 1)
    .execute();
  return rows.map((r) => [r.fingerprint, r.superseded_at !== null] as const).sort();
}

/**
 * The agent's own renewal (real bundle on disk, real client), run once with every role due;
 * then a heartbeat with whatever identity the bundle holds now.
 */
async function agentRenewsAndBeats(identity: Awaited<ReturnType<typeof loadAgentIdentity>>, roles = 2) {
  const client = createControllerClient(t.endpoints.worker, identity.material());
  identity.onChange((m) => client.reload(m));
  try {
    const renewed = await renewIfDue({
      identity,
      client: () => client,
      renewBeforeMs: 100 * 86_400_000,
      now: Date.now,
      log: silentLog,
    });
    expect(renewed).toHaveLength(roles);
    return await client.heartbeat(heartbeatBody(identity.manifest.hostId));
  } finally {
    await client.close();
  }
}

describe('renewal survives a lost answer', () => {
  it('the client discards the first answer: the retry with the old certificate gets a working successor', async () => {
    const e = await t.enroll('retry-discard');
    await using old = workerClient(t.endpoints.worker, agentMaterial(e));
    let disconnected = 0;
    old.on('disconnect', () => disconnected++);

    // The first answer is read and thrown away, as if lost in transit.
    const lost = await postJson(old, '/v1/renew', { role: 'agent', csrPem: (await createCsr('x')).csrPem });
    expect(lost.status).toBe(200);
    const lostFingerprint = (lost.body as unknown as RenewResponse).fingerprint;

    // The same connection, still on the old certificate, asks again and is answered.
    const csr = await createCsr('x');
    const again = await postJson(old, '/v1/renew', { role: 'agent', csrPem: csr.csrPem });
    expect(again.status).toBe(200);
    const successor = again.body as unknown as RenewResponse;
    // The successor the worker never saw is retired; the held certificate stays, superseded.
    expect(await activePins(e.hostId, 'agent')).toEqual(
      [
        [e.agent.fingerprint, true],
        [successor.fingerprint, false],
      ].sort(),
    );
    expect(t.controller.pins.lookup(lostFingerprint)).toBeUndefined();
    // The old certificate still works on the same connection (it was never closed).
    expect((await postJson(old, '/v1/heartbeat', heartbeatBody(e.hostId))).status).toBe(200);
    expect(disconnected).toBe(0);

    // The successor works, and once it is used the old one goes.
    await using next = workerClient(t.endpoints.worker, {
      caPem: e.caPem,
      certPem: successor.certPem,
      keyPem: csr.keyPem,
    });
    expect((await postJson(next, '/v1/heartbeat', heartbeatBody(e.hostId))).status).toBe(200);
    await t.controller.keeper.settle();
    expect(await activePins(e.hostId, 'agent')).toEqual([[successor.fingerprint, false]]);
  });

  it('the connection is cut after the server wrote its answer: the agent retries and heartbeats with the successor', async () => {
    const e = await t.enroll('retry-cut');
    const identity = await bundleOf(e);
    const { host, port } = parseHostPort(t.endpoints.worker);
    const csr = await createCsr('x');
    const body = JSON.stringify({ role: 'agent', csrPem: csr.csrPem });

    // A raw mutual-TLS connection that sends the request and hangs up on the first byte of
    // the answer: the server wrote it, the worker never read it.
    const socket = connect({
      host,
      port,
      servername: 'localhost',
      ...clientTlsOptions(agentMaterial(e), { roles: ['controller'] }),
    });
    await once(socket, 'secureConnect');
    socket.write(
      `POST /v1/renew HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    const [firstBytes] = (await once(socket, 'data')) as [Buffer];
    socket.destroy();
    expect(firstBytes.toString('latin1')).toMatch(/^HTTP\/1\.1 200/);
    await waitFor(async () => (await activePins(e.hostId, 'agent')).length === 2);

    // The agent, still holding the old certificate, renews both roles and beats with the new one.
    const hb = await agentRenewsAndBeats(identity);
    expect(hb.ackedEventIds).toEqual([]);
    const now = identity.fingerprint();
    expect(now).not.toBe(e.agent.fingerprint);
    expect(identityFromPem(identity.material().certPem)).toMatchObject({ role: 'agent', hostId: e.hostId });
    await t.controller.keeper.settle();
    expect(await activePins(e.hostId, 'agent')).toEqual([[now, false]]);
    const detail = (
      await t.admin<{ host: { agentFingerprint: string; status: string } }>('GET', '/v1/hosts/retry-cut')
    ).body.host;
    expect(detail).toMatchObject({ agentFingerprint: now, status: 'online' });
    // The old certificate is refused from now on.
    await using late = workerClient(t.endpoints.worker, agentMaterial(e));
    expect((await postJson(late, '/v1/heartbeat', heartbeatBody(e.hostId))).status).toBe(403);
  });

  it("an updater renewal asked again keeps the updater's held certificate pinned", async () => {
    const e = await t.enroll('retry-updater');
    await using client = workerClient(t.endpoints.worker, agentMaterial(e));
    const ask = async () =>
      postJson(client, '/v1/renew', {
        role: 'updater',
        csrPem: (await createCsr('u')).csrPem,
        replaces: e.updater.fingerprint,
      });
    const first = (await ask()).body as unknown as RenewResponse;
    const second = (await ask()).body as unknown as RenewResponse;
    const third = (await ask()).body as unknown as RenewResponse;
    expect(new Set([first.fingerprint, second.fingerprint, third.fingerprint]).size).toBe(3);
    expect(await activePins(e.hostId, 'updater')).toEqual(
      [
        [e.updater.fingerprint, true],
        [third.fingerprint, false],
      ].sort(),
    );
    expect(t.controller.pins.fingerprintsFor(e.hostId, 'updater').sort()).toEqual(
      [e.updater.fingerprint, third.fingerprint].sort(),
    );
  });

  it('several renewals in a row through the agent keep the host online and leave two pins at most', async () => {
    const e = await t.enroll('retry-repeat');
    const identity = await bundleOf(e);
    const seen = new Set<string>([identity.fingerprint() ?? '']);
    for (let round = 0; round < 6; round++) {
      await agentRenewsAndBeats(identity);
      const fp = identity.fingerprint() ?? '';
      expect(seen.has(fp)).toBe(false);
      seen.add(fp);
      await t.controller.keeper.settle();
      expect(await activePins(e.hostId, 'agent')).toEqual([[fp, false]]);
      expect((await activePins(e.hostId, 'updater')).length).toBeLessThanOrEqual(2);
      const host = (
        await t.admin<{ host: { status: string; agentFingerprint: string } }>('GET', '/v1/hosts/retry-repeat')
      ).body.host;
      expect(host).toEqual(expect.objectContaining({ status: 'online', agentFingerprint: fp }));
    }
  });
});
