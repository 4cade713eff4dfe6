import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostDetail } from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import { pino } from 'pino';
import { checkStanding, watchStanding } from '../updater/standing.js';
import { createServer } from 'node:net';
import { once } from 'node:events';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

/**
 * A host decommissioned while offline learns it at its next contact, and only it: the
 * controller answers 410 CORRAL_ERR_DECOMMISSIONED to a connection presenting that host's own
 * last-pinned certificate, and every other refused caller the very same 403 as before.
 */
let t: TestController;
beforeAll(async () => {
  t = await startController({ decommissionWaitMs: 500 });
});
afterAll(async () => {
  await t.close();
});

const wipeReport = (hostId: string) => ({
  hostId,
  stoppedServices: 2,
  stoppedDaemons: ['updater', 'forwarder', 'agent'],
  stoppedUnits: [],
  deletedPaths: 7,
  keptPaths: ['/var/log/corral'],
  errors: [],
  finishedAt: new Date().toISOString(),
});

/** One accepted heartbeat, so the host was in use (a wipe is then pending once decommissioned). */
async function seen(material: ReturnType<typeof agentMaterial>, hostId: string): Promise<void> {
  await using client = workerClient(t.endpoints.worker, material);
  expect((await postJson(client, '/v1/heartbeat', heartbeatBody(hostId))).status).toBe(200);
}

async function get(client: ReturnType<typeof workerClient>, path: string) {
  const res = await client.request({ method: 'GET', path });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('decommissioned notice', () => {
  it('tells the decommissioned host (and only it) so; everyone else gets the same 403 as before', async () => {
    const gone = await t.enroll('notice-gone', { agentPort: 1 });
    const alive = await t.enroll('notice-alive', { agentPort: 1 });
    // Same CA, same host id and role as the decommissioned host, but never pinned.
    const forged = await t.identity.ca.issue({ role: 'agent', hostId: gone.hostId, commonName: 'x' });
    const forgedMaterial = { caPem: gone.caPem, certPem: forged.certPem, keyPem: forged.keyPem };

    // Before: the forged certificate gets the plain 403.
    await using forgedBefore = workerClient(t.endpoints.worker, forgedMaterial);
    const before = await postJson(forgedBefore, '/v1/heartbeat', heartbeatBody(gone.hostId));
    expect(before.status).toBe(403);
    await seen(agentMaterial(gone), gone.hostId);

    const res = await t.admin<{ host: { wipe: string | null } }>(
      'POST',
      '/v1/hosts/notice-gone/decommission',
    );
    expect(res.status).toBe(200);
    expect(res.body.host.wipe).toBe('pending');

    // The host's own agent certificate: 410, on the heartbeat and on renewal.
    await using own = workerClient(t.endpoints.worker, agentMaterial(gone));
    const told = await postJson(own, '/v1/heartbeat', heartbeatBody(gone.hostId));
    expect([told.status, told.body.error?.code]).toEqual([410, ErrorCode.DECOMMISSIONED]);
    const renew = await postJson(own, '/v1/renew', { role: 'agent', csrPem: 'x' });
    expect([renew.status, renew.body.error?.code]).toEqual([410, ErrorCode.DECOMMISSIONED]);
    // And on the standing check the updater makes (with the same agent identity).
    expect(await checkStanding(t.endpoints.worker, agentMaterial(gone))).toBe('decommissioned');
    // The updater's watch, with a dead controller first in the bundle's list, moves on to this one.
    const dead = createServer();
    dead.listen(0, '127.0.0.1');
    await once(dead, 'listening');
    const deadAddress = `127.0.0.1:${(dead.address() as { port: number }).port}`;
    dead.close();
    await once(dead, 'close');
    const watched = await watchStanding({
      controllers: [deadAddress, t.endpoints.worker],
      tls: () => agentMaterial(gone),
      intervalMs: 50,
      log: pino({ level: 'silent' }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(watched).toBe('decommissioned');

    // Every other refused caller: byte-for-byte the 403 a stranger got before the decommission.
    await using forgedAfter = workerClient(t.endpoints.worker, forgedMaterial);
    const forgedRefused = await postJson(forgedAfter, '/v1/heartbeat', heartbeatBody(gone.hostId));
    expect(forgedRefused).toEqual(before);
    const forgedStanding = await get(forgedAfter, '/v1/standing');
    expect(forgedStanding.status).toBe(403);
    expect(forgedStanding.body).toEqual(before.body);
    expect(await checkStanding(t.endpoints.worker, forgedMaterial)).toBe('unknown');
    const forgedWipe = await postJson(forgedAfter, '/v1/wipe-report', wipeReport(gone.hostId));
    expect(forgedWipe).toEqual(before);
    // Another host, live, naming the decommissioned host's id: the same 403.
    await using other = workerClient(t.endpoints.worker, agentMaterial(alive));
    const mismatch = await postJson(other, '/v1/heartbeat', heartbeatBody(gone.hostId));
    expect(mismatch).toEqual(before);
    // A live host's own standing is 200.
    expect(await get(other, '/v1/standing')).toEqual({
      status: 200,
      body: { hostId: alive.hostId, standing: 'enrolled' },
    });
    expect(await checkStanding(t.endpoints.worker, agentMaterial(alive))).toBe('enrolled');
  });

  it('records the wipe report of the decommissioned host: wipe pending, then wiped', async () => {
    const gone = await t.enroll('notice-wiped', { agentPort: 1 });
    await seen(agentMaterial(gone), gone.hostId);
    await t.admin('POST', '/v1/hosts/notice-wiped/decommission');
    const pending = await t.admin<HostDetail>('GET', '/v1/hosts/notice-wiped');
    expect(pending.body.host).toMatchObject({ status: 'decommissioned', wipe: 'pending', wipedAt: null });

    await using own = workerClient(t.endpoints.worker, agentMaterial(gone));
    // Its report must be about itself.
    const wrong = await postJson(own, '/v1/wipe-report', wipeReport('0'.repeat(32)));
    expect(wrong.status).toBe(403);
    const reported = await postJson(own, '/v1/wipe-report', wipeReport(gone.hostId));
    expect(reported.status).toBe(200);
    expect(reported.body.hostId).toBe(gone.hostId);

    const wiped = await t.admin<HostDetail>('GET', '/v1/hosts/notice-wiped');
    expect(wiped.body.host).toMatchObject({ status: 'decommissioned', wipe: 'wiped' });
    expect(wiped.body.host.wipedAt).toBe(reported.body.wipedAt);
    const audit = await t.admin<{ entries: { action: string; target: string }[] }>('GET', '/v1/audit');
    expect(audit.body.entries.filter((e) => e.action === 'wiped').map((e) => e.target)).toContain(
      'notice-wiped',
    );
  });

  it('still tells the host after a controller restart (the last pins are kept in the database)', async () => {
    await using c = await startController({ decommissionWaitMs: 500 });
    const gone = await c.enroll('notice-restart', { agentPort: 1 });
    await c.admin('POST', '/v1/hosts/notice-restart/decommission');
    await using again = await startController({ dir: c.dir, decommissionWaitMs: 500 });
    await using own = workerClient(again.endpoints.worker, agentMaterial(gone));
    const told = await postJson(own, '/v1/heartbeat', heartbeatBody(gone.hostId));
    expect([told.status, told.body.error?.code]).toEqual([410, ErrorCode.DECOMMISSIONED]);
  });
});
