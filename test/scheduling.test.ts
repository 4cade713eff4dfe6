import { afterAll, describe, expect, it } from 'vitest';
import type { DeployResponse, ServiceListResponse } from '../protocol/deployment.js';
import { ErrorCode } from '../protocol/errors.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import { startController, waitFor, type TestController } from './controller-fixture.js';
import {
  addWorker,
  LIVENESS_INTERVAL_MS,
  observedMap,
  spec,
  svc,
  type FleetWorker,
} from './deploy-fixture.js';

/**
 * Placement the controller keeps up on its own, against a real controller and real agents:
 * `count` over too few hosts leaves an instance pending until a host joins; `every-host`
 * reaches a host that joins later. One controller for the file; every case adds its hosts.
 */
type Err = { error: { code: string; message: string } };

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

let shared: TestController | undefined;
async function controller(): Promise<TestController> {
  if (!shared) {
    shared = await startController({
      heartbeatIntervalMs: LIVENESS_INTERVAL_MS,
      schedule: { tickMs: 200, rescheduleAfterMs: null },
    });
    const t = shared;
    cleanups.push(() => t.close());
  }
  return shared;
}

async function join(t: TestController, name: string, labels?: Record<string, string>): Promise<FleetWorker> {
  const w = await addWorker(t, name, labels ? { labels } : {});
  cleanups.push(() => w.destroy());
  await waitFor(async () => {
    const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
    return hosts.find((h) => h.name === name)?.status === 'online';
  });
  return w;
}

const services = async (t: TestController) =>
  (await t.admin<ServiceListResponse>('GET', '/v1/services')).body;
const pendingMetric = async (t: TestController): Promise<number> => {
  const text = (await t.admin<string>('GET', '/metrics')).body;
  const m = /^corral_services_pending (\d+)$/m.exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

describe('scheduling', () => {
  it('count: 3 over 2 hosts is refused whole, or with allowPending runs 2 spread and places the third when a host joins', async () => {
    const t = await controller();
    await join(t, 'c-a', { pool: 'count' });
    await join(t, 'c-b', { pool: 'count' });
    const api = svc('api', { count: 3, placement: { labels: { pool: 'count' } } });

    const refused = await t.admin<Err>('POST', '/v1/deploy', { spec: spec(api) });
    expect([refused.status, refused.body.error.code]).toEqual([422, ErrorCode.PLACEMENT]);
    expect(refused.body.error.message).toContain('api#3 (spread: each of the 2 eligible hosts');
    expect((await services(t)).services).toEqual([]);

    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', { spec: spec(api), allowPending: true });
    expect(res.status).toBe(200);
    expect(res.body.ok).toBe(true);
    expect(res.body.plan.map((p) => [p.service, p.host])).toEqual([
      ['api#1', 'c-a'],
      ['api#2', 'c-b'],
    ]);
    expect(res.body.pending.map((p) => p.service)).toEqual(['api#3']);
    await waitFor(async () => {
      const seen = observedMap((await services(t)).services);
      return seen['api#1@c-a'] === 'running' && seen['api#2@c-b'] === 'running';
    });
    const listed = await services(t);
    expect(listed.pending?.map((p) => [p.service, p.reason])).toEqual([
      ['api#3', 'spread: each of the 2 eligible hosts already runs an instance of api'],
    ]);
    expect(await pendingMetric(t)).toBe(1);

    // A third host that fits: the controller places the waiting instance, as an operation.
    await join(t, 'c-c', { pool: 'count' });
    await waitFor(async () => observedMap((await services(t)).services)['api#3@c-c'] === 'running');
    expect((await services(t)).pending).toEqual([]);
    expect(await pendingMetric(t)).toBe(0);
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    const resched = ops.find((o) => o.kind === 'reschedule');
    expect(resched).toMatchObject({ actor: 'controller', state: 'succeeded' });
    const detail = (await t.admin<OperationDetail>('GET', `/v1/ops/${resched?.id ?? ''}`)).body;
    expect(detail.steps.map((s) => [s.host, s.state])).toEqual([['c-c', 'succeeded']]);
    expect(detail.log.map((l) => l.message)).toContain('api#3 placed on c-c');
  });

  it('every-host: one instance on each eligible host, and one on a host that joins later', async () => {
    const t = await controller();
    await join(t, 'e-a', { pool: 'every' });
    await join(t, 'e-b', { pool: 'every' });
    const node = svc('node-exp', { placement: { everyHost: true, labels: { pool: 'every' } } });
    // The count service of the first case stays in the spec: a deploy replaces the whole spec.
    const api = svc('api', { count: 3, placement: { labels: { pool: 'count' } } });
    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', { spec: spec(api, node) });
    expect(res.status).toBe(200);
    expect(res.body.plan.filter((p) => p.service === 'node-exp').map((p) => [p.host, p.change])).toEqual([
      ['e-a', 'placed'],
      ['e-b', 'placed'],
    ]);
    expect(res.body.plan.filter((p) => p.service.startsWith('api')).every((p) => p.change === 'kept')).toBe(
      true,
    );
    await join(t, 'e-c', { pool: 'every' });
    await waitFor(async () => {
      const seen = observedMap((await services(t)).services);
      return ['e-a', 'e-b', 'e-c'].every((h) => seen[`node-exp@${h}`] === 'running');
    });
    // Hosts outside the constraint never get one.
    const rows = (await services(t)).services.filter((s) => s.service === 'node-exp');
    expect(rows.map((r) => r.host).sort()).toEqual(['e-a', 'e-b', 'e-c']);
  });

  it("decommission moves a host's services at once, with reschedule-after off", async () => {
    const t = await controller();
    const a = await join(t, 'd-a', { pool: 'decom' });
    const b = await join(t, 'd-b', { pool: 'decom' });
    const solo = svc('solo', { placement: { labels: { pool: 'decom' } } });
    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', {
      spec: spec(
        svc('api', { count: 3, placement: { labels: { pool: 'count' } } }),
        svc('node-exp', { placement: { everyHost: true, labels: { pool: 'every' } } }),
        solo,
      ),
    });
    const from = res.body.plan.find((p) => p.service === 'solo')?.host;
    const to = from === 'd-a' ? 'd-b' : 'd-a';
    await waitFor(async () => observedMap((await services(t)).services)[`solo@${from}`] === 'running');
    await (from === 'd-a' ? a : b).stop();
    expect((await t.admin('POST', `/v1/hosts/${from}/decommission`)).status).toBe(200);
    await waitFor(async () => observedMap((await services(t)).services)[`solo@${to}`] === 'running');
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    const detail = (
      await t.admin<OperationDetail>('GET', `/v1/ops/${ops.find((o) => o.kind === 'reschedule')?.id ?? ''}`)
    ).body;
    expect(detail.log.map((l) => l.message)).toContain(`solo moves from ${from} to ${to}`);
  });
});
