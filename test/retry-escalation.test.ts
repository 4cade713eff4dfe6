import { afterAll, describe, expect, it } from 'vitest';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse, ServiceListResponse } from '../protocol/deployment.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import { startController, waitFor } from './controller-fixture.js';
import { addWorker, LIVENESS_INTERVAL_MS, spec, svc } from './deploy-fixture.js';

/**
 * A service its agent gives up on (restart limit) is tried again by the controller after a
 * short cooldown, a bounded number of times, then escalated: a real controller and agent.
 */
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('failed-service retries', { timeout: 150_000 }, () => {
  it('retries a failed service after the cooldown, twice, then shows it escalated and counts it', async () => {
    const t = await startController({
      heartbeatIntervalMs: LIVENESS_INTERVAL_MS,
      schedule: { tickMs: 200, rescheduleAfterMs: null, retry: { cooldownMs: 500, maxRetries: 2 } },
    });
    cleanups.push(() => t.close());
    const w = await addWorker(t, 'rt-a');
    cleanups.push(() => w.destroy());
    await waitFor(async () => {
      const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
      return hosts.find((h) => h.name === 'rt-a')?.status === 'online';
    });
    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', {
      spec: spec(svc('crasher', { args: ['-c', 'echo boom >&2; exit 3'] })),
    });
    expect(res.status).toBe(200);
    await waitFor(async () => {
      const { services } = (await t.admin<ServiceListResponse>('GET', '/v1/services')).body;
      return services.find((s) => s.service === 'crasher')?.escalated !== undefined;
    }, 90_000);
    const { services } = (await t.admin<ServiceListResponse>('GET', '/v1/services')).body;
    const row = services.find((s) => s.service === 'crasher');
    expect(row?.observed).toBe('failed');
    expect(row?.escalated).toContain('failed after 2 retries by the controller');

    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    const retries = ops.filter((o) => o.kind === 'retry');
    expect(retries.length).toBe(2);
    expect(retries.every((o) => o.actor === 'controller')).toBe(true);
    const messages: string[] = [];
    for (const op of retries) {
      messages.push(
        ...(await t.admin<OperationDetail>('GET', `/v1/ops/${op.id}`)).body.log.map((l) => l.message),
      );
    }
    expect(messages).toContain('crasher failed on rt-a; trying again (1 of 2)');
    expect(messages).toContain('crasher failed on rt-a; trying again (2 of 2)');
    const metrics = (await t.admin<string>('GET', '/metrics')).body;
    expect(metrics).toMatch(/^corral_services_escalated 1$/m);
  });
});
