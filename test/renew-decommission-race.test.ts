import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../pki/index.js';
import type { RenewResponse } from '../protocol/enrollment.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
beforeAll(async () => {
  // Nothing listens on the enrolled agent port: the self-destruct call fails at once, so the
  // decommission reaches its transaction while the renewal is in flight.
  t = await startController({ decommissionWaitMs: 500 });
});
afterAll(async () => {
  await t.close();
});

const ROUNDS = 20;

describe('renewal racing a decommission', () => {
  it(`never leaves an active pin for a decommissioned host (${ROUNDS} rounds, both fired at once)`, async () => {
    const outcomes = { renewWon: 0, renewRefused: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      const name = `race-${round}`;
      const e = await t.enroll(name, { agentPort: 9, updaterPort: 9 });
      await using client = workerClient(t.endpoints.worker, agentMaterial(e));
      // The connection is up and the CSR made before the race starts.
      expect((await postJson(client, '/v1/heartbeat', heartbeatBody(e.hostId))).status).toBe(200);
      const csr = await createCsr('race');
      const role = round % 2 === 0 ? 'agent' : 'updater';
      // The decommission starts up to ~20 ms after the renewal, so that over the rounds either
      // one commits first and, in between, the two interleave.
      const [renew, decommission] = await Promise.allSettled([
        postJson(client, '/v1/renew', { role, csrPem: csr.csrPem }),
        sleep((round % 7) * 3).then(() => t.admin('POST', `/v1/hosts/${name}/decommission`)),
      ]);
      expect(decommission.status === 'fulfilled' && decommission.value.status).toBe(200);
      let renewed: string | undefined;
      if (renew.status === 'fulfilled' && renew.value.status === 200) {
        renewed = (renew.value.body as unknown as RenewResponse).fingerprint;
        outcomes.renewWon++;
      } else {
        // Refused (403 inside the race; 410 once the decommission is in: this host's own
        // certificate is told), or its connection closed by the decommission.
        if (renew.status === 'fulfilled') expect([403, 410]).toContain(renew.value.status);
        outcomes.renewRefused++;
      }
      await t.controller.keeper.settle();

      const active = await t.db
        .selectFrom('pins')
        .select(['fingerprint', 'role'])
        .where('host_id', '=', e.hostId)
        .where('active', '=', 1)
        .execute();
      expect(active, `round ${round}: active pins in the database`).toEqual([]);
      expect(t.controller.pins.fingerprintsFor(e.hostId, 'agent')).toEqual([]);
      expect(t.controller.pins.fingerprintsFor(e.hostId, 'updater')).toEqual([]);
      for (const fp of [e.agent.fingerprint, e.updater.fingerprint, renewed]) {
        if (fp !== undefined) expect(t.controller.pins.lookup(fp), `round ${round}: ${fp}`).toBeUndefined();
      }
      if (renewed !== undefined && role === 'agent' && renew.status === 'fulfilled') {
        const certPem = (renew.value.body as unknown as RenewResponse).certPem;
        await using late = workerClient(t.endpoints.worker, { caPem: e.caPem, certPem, keyPem: csr.keyPem });
        const refused = await postJson(late, '/v1/heartbeat', heartbeatBody(e.hostId));
        // Pinned when the host was decommissioned: refused, and told so.
        expect(refused.status, `round ${round}: the renewed certificate after decommission`).toBe(410);
      }
    }
    // Which one wins is the scheduler's business; the invariant above must hold either way.
    expect(outcomes.renewWon + outcomes.renewRefused).toBe(ROUNDS);
    console.log(`renewal vs decommission over ${ROUNDS} rounds:`, outcomes);
  });
});
