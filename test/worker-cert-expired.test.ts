import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, type TlsMaterial } from '../pki/index.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';
import { metricValue, pinExpiredAgentCertificate, type MintedCertificate } from './expired-cert-fixture.js';

let dir: string;
let t: TestController;
let expiredHost: EnrollResponse;
let fresh: EnrollResponse;
let expired: MintedCertificate;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-expired-'));
  const first = await startController({ dir });
  expiredHost = await first.enroll('exp-1');
  fresh = await first.enroll('fresh-1');
  expired = await pinExpiredAgentCertificate(first.db, first.identity.ca, {
    id: expiredHost.hostId,
    name: 'exp-1',
  });
  await first.close();
  // The pin is loaded from the database at start, as after any restart.
  t = await startController({ dir });
});
afterAll(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const metrics = async (): Promise<string> => (await t.admin<string>('GET', '/metrics')).body;

/** One heartbeat on a new connection; the status, or the client-side error's message. */
async function attempt(material: TlsMaterial, hostId: string): Promise<number | string> {
  await using client = workerClient(t.endpoints.worker, material);
  try {
    return (await postJson(client, '/v1/heartbeat', heartbeatBody(hostId))).status;
  } catch (e: unknown) {
    return e instanceof Error ? e.message : String(e);
  }
}

describe('expired worker certificates', () => {
  it('are still refused by TLS, and each refusal is counted under the host it was pinned to', async () => {
    const material = { caPem: expiredHost.caPem, certPem: expired.certPem, keyPem: expired.keyPem };
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(await attempt(material, expiredHost.hostId));
    // No status: the connection is refused before any request is answered.
    for (const o of outcomes) expect(typeof o).toBe('string');

    const text = await metrics();
    expect(metricValue(text, 'corral_worker_certificates_expired_total{host="exp-1"}')).toBe(3);
    expect(metricValue(text, 'corral_worker_tls_refused_total{reason="expired"}')).toBe(3);
    expect(metricValue(text, 'corral_worker_certificates_expired_total{host="fresh-1"}')).toBeUndefined();
    // A valid certificate on the same listener is unaffected.
    expect(await attempt(agentMaterial(fresh), fresh.hostId)).toBe(200);
  });

  it('an expired certificate that was never pinned, and one of another CA, are counted by reason only', async () => {
    const before = await metrics();
    const unpinned = await t.identity.ca.issue({
      role: 'agent',
      hostId: 'h-00000000000000aa',
      commonName: 'stranger',
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    expect(typeof (await attempt({ caPem: fresh.caPem, ...unpinned }, 'h-00000000000000aa'))).toBe('string');
    const other = await createCa();
    const foreign = await other.issue({ role: 'agent', hostId: fresh.hostId, commonName: 'forged' });
    expect(typeof (await attempt({ caPem: fresh.caPem, ...foreign }, fresh.hostId))).toBe('string');

    const after = await metrics();
    const delta = (series: string): number =>
      (metricValue(after, series) ?? 0) - (metricValue(before, series) ?? 0);
    expect(delta('corral_worker_tls_refused_total{reason="expired"}')).toBe(1);
    expect(delta('corral_worker_tls_refused_total{reason="untrusted"}')).toBe(1);
    expect(
      after.split('\n').filter((l) => l.startsWith('corral_worker_certificates_expired_total{')),
    ).toEqual(['corral_worker_certificates_expired_total{host="exp-1"} 3']);
  });
});
